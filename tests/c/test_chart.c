/* Text charts and pictures (src/core/chart.h): small charts rendered
 * exactly, dot placement, ticks, zoom, gaps, legends, odd canvas sizes,
 * xterm-256 colour mapping, image scaling and drawing speed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/chart.h"
#include "tap.h"

/* The chart of n_series series drawn in a w x h canvas, as plain text (malloc'd; NULL on error). */
static char *chart(int w, int h, const gl_series *s, int n, gl_chart_opts o, bool ansi)
{
    gl_canvas c;
    if (gl_canvas_init(&c, w, h) != GL_OK) return NULL;
    char *text = gl_chart_draw(&c, s, n, &o) == GL_OK ? gl_canvas_to_string(&c, ansi) : NULL;
    gl_canvas_free(&c);
    return text;
}

static bool check_text(char *got, const char *want, const char *name)
{
    bool same = got && strcmp(got, want) == 0;
    ok(same, "%s", name);
    if (!same) printf("# got:\n%s\n# want:\n%s\n", got ? got : "(error)", want);
    free(got);
    return same;
}

/* Row r (0-based) of text, in a static buffer. */
static const char *row_of(const char *text, int r)
{
    static char buf[4096];
    for (int i = 0; i < r && text; i++) {
        text = strchr(text, '\n');
        if (text) text++;
    }
    if (!text) return "";
    size_t n = strcspn(text, "\n");
    if (n >= sizeof buf) n = sizeof buf - 1;
    memcpy(buf, text, n);
    buf[n] = '\0';
    return buf;
}

static int count_rows(const char *text)
{
    int n = 1;
    for (; *text; text++) n += *text == '\n';
    return n;
}

/* Characters (not bytes) in a UTF-8 row. */
static int row_cells(const char *row)
{
    int n = 0;
    for (; *row; row++) n += ((unsigned char)*row & 0xC0) != 0x80;
    return n;
}

static void test_canvas(void)
{
    gl_canvas c;
    ok(gl_canvas_init(&c, 0, 3) == GL_EINVAL && strstr(gl_error_message(), "canvas: size 0x3"),
       "a 0-wide canvas is an error: %s", gl_error_message());
    ok(gl_canvas_init(&c, 100000, 100000) == GL_EINVAL, "a 10^10-cell canvas is an error");
    ok(gl_canvas_init(&c, 4, 2) == GL_OK, "4x2 canvas");
    char *s = gl_canvas_to_string(&c, false);
    check_text(s, "\n", "a blank canvas is empty rows");
    snprintf(c.cells[1].text, sizeof c.cells[1].text, "é");
    c.cells[1].fg = 196;
    c.cells[5].bg = 21;
    check_text(gl_canvas_to_string(&c, false), " é\n", "plain text: UTF-8 kept, trailing blanks trimmed");
    check_text(gl_canvas_to_string(&c, true), " \x1b[0;38;5;196mé\x1b[0m\n \x1b[0;48;5;21m \x1b[0m",
               "ANSI: one SGR per change, reset at row end, a coloured background is not trimmed");
    gl_canvas_free(&c);
    gl_canvas_free(&c);
    ok(c.cells == NULL, "free is idempotent");
}

static void test_numbers(void)
{
    static const struct {
        double v;
        int prec;
        const char *want;
    } cases[] = {
        {4.17, 3, "4.17"}, {0.0012, 2, "1.2e-3"}, {0.00123, 3, "1.23e-3"}, {12000, 3, "12k"},
        {12345, 3, "12.3k"}, {40000, 1, "40k"}, {1.5e6, 3, "1.5M"}, {999.97, 3, "1k"},
        {-0.5, 3, "-0.5"}, {0, 3, "0"}, {1e20, 2, "1e20"}, {250, 3, "250"}, {0.25, 3, "0.25"},
        {-3.2e9, 2, "-3.2G"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[32];
        gl_chart_format_number(cases[i].v, cases[i].prec, buf, sizeof buf);
        ok(strcmp(buf, cases[i].want) == 0, "number %g with %d digits reads %s (got %s)", cases[i].v,
           cases[i].prec, cases[i].want, buf);
    }
}

static void test_ascii_charts(void)
{
    double rise[5] = {1, 2, 3, 4, 5};
    gl_series s = {"rise", NULL, rise, 5, -1};
    gl_chart_opts ascii = {.glyphs = GL_GLYPHS_ASCII};
    check_text(chart(10, 4, &s, 1, ascii, false),
               "5+   *****\n"
               "1+***\n"
               " +--------\n"
               "  0      4",
               "a rising line in ASCII, 10x4");
    check_text(chart(20, 8, &s, 1, ascii, false),
               "  5+             ***\n"
               "   |          ***\n"
               "   |       ***\n"
               "2.6+     **\n"
               "   |  ***\n"
               "  1+**\n"
               "   +----------------\n"
               "    0              4",
               "a rising line in ASCII, 20x8 (2.6 is the value of its row: 3 rounds into the row above)");

    double gap[7] = {1, 2, 3, NAN, 3, 2, 1};
    gl_series g = {"g", NULL, gap, 7, -1};
    check_text(chart(16, 6, &g, 1, ascii, false),
               "  3+   **  *\n"
               "   |  *     **\n"
               "1.7+ *        *\n"
               "  1+*          *\n"
               "   +------------\n"
               "    0          6",
               "a NaN is a gap: points 2 and 4 are not joined");

    double flat[4] = {2, 2, 2, 2};
    gl_series f = {"f", NULL, flat, 4, -1};
    check_text(chart(12, 7, &f, 1, ascii, false),
               "2.2+\n"
               "   |\n"
               "  2+********\n"
               "   |\n"
               "1.8+\n"
               "   +--------\n"
               "    0      3",
               "a constant is a flat line in the middle");

    check_text(chart(16, 5, NULL, 0, ascii, false),
               "|\n"
               "|    no data\n"
               "|\n"
               "|\n"
               "+---------------",
               "no series: an axis saying no data");
    gl_series empty = {"e", NULL, NULL, 0, -1};
    char *t = chart(16, 5, &empty, 1, ascii, false);
    ok(t && strstr(t, "no data"), "an empty series: no data");
    free(t);
    double nan1[2] = {NAN, NAN};
    gl_series allnan = {"n", NULL, nan1, 2, -1};
    t = chart(16, 5, &allnan, 1, ascii, false);
    ok(t && strstr(t, "no data"), "an all-NaN series: no data");
    free(t);
}

static void test_braille(void)
{
    /* Two isolated points (a NaN between): the first at the top-left dot,
     * the last at the bottom-right dot, nothing else in the plot. */
    double y[3] = {1, NAN, 0};
    gl_series s = {"p", NULL, y, 3, -1};
    gl_chart_opts o = {.glyphs = GL_GLYPHS_BRAILLE};
    char *t = chart(12, 6, &s, 1, o, false);
    ok(t && strcmp(row_of(t, 0), "  1┤⠁") == 0, "first point: dot 1 (U+2801) in the top-left cell (%s)",
       t ? row_of(t, 0) : "");
    ok(t && strcmp(row_of(t, 3), "  0┤       ⢀") == 0, "last point: dot 8 (U+2880) in the bottom-right cell (%s)",
       t ? row_of(t, 3) : "");
    ok(t && strcmp(row_of(t, 1), "   │") == 0 && strcmp(row_of(t, 2), "0.4┤") == 0, "no other dots");
    free(t);

    /* One point: the middle of the plot. 12x6: plot 8 cols x 4 rows = 16x16 dots -> dot (7, 7):
     * cell (3, 1), right column, bottom row: dot 8 (U+2880). */
    double one[1] = {5};
    gl_series p1 = {"one", NULL, one, 1, -1};
    t = chart(12, 6, &p1, 1, o, false);
    ok(t && strcmp(row_of(t, 1), "   │   ⢀") == 0, "a single point sits in the middle (%s)", t ? row_of(t, 1) : "");
    free(t);

    /* A steep rise over two columns: the joining line leaves no row empty. */
    double steep[2] = {0, 1};
    gl_series st = {"s", NULL, steep, 2, -1};
    t = chart(30, 12, &st, 1, o, false);
    bool continuous = t != NULL;
    for (int r = 0; t && r < 10; r++) continuous &= strstr(row_of(t, r), "⠀") == NULL && row_cells(row_of(t, r)) > 3;
    ok(continuous, "consecutive points are joined: every plot row has dots");
    free(t);

    o.glyphs = GL_GLYPHS_BLOCKS;
    t = chart(12, 6, &s, 1, o, false);
    ok(t && strcmp(row_of(t, 0), "  1┤▘") == 0 && strcmp(row_of(t, 3), "  0┤       ▗") == 0,
       "blocks: quadrants at the top-left and bottom-right");
    free(t);
}

static void test_axes(void)
{
    double decay[5] = {1, 0.1, 0.01, 1e-3, 1e-4};
    gl_series s = {"lr", NULL, decay, 5, -1};
    gl_chart_opts o = {.log_y = true};
    char *t = chart(40, 11, &s, 1, o, false);
    static const char *ticks[5] = {"   1┤", " 0.1┤", "0.01┤", "1e-3┤", "1e-4┤"};
    for (int i = 0; i < 5; i++)
        ok(t && strncmp(row_of(t, 2 * i), ticks[i], strlen(ticks[i])) == 0, "log axis: row %d reads %s (%s)", 2 * i,
           ticks[i], t ? row_of(t, 2 * i) : "");
    /* A straight line: each row's first dot a few cells right of the row above's. */
    int prev = -1;
    bool straight = t != NULL;
    for (int r = 0; t && r < 9; r++) {
        const char *row = row_of(t, r) + strlen("   1┤");
        int lead = (int)strspn(row, " ");
        straight &= row[lead] != '\0' && lead > prev && lead <= prev + 5;
        prev = lead;
    }
    ok(straight, "log axis: a geometric decay is a straight line");
    free(t);

    double signs[4] = {1, 0, -1, 10};
    gl_series sg = {"sg", NULL, signs, 4, -1};
    t = chart(30, 8, &sg, 1, o, false);
    ok(t && strncmp(row_of(t, 0), "10┤", 4) == 0 && strncmp(row_of(t, 5), " 1┤", 4) == 0,
       "log axis: non-positive values are skipped");
    free(t);

    double ramp[100];
    for (int i = 0; i < 100; i++) ramp[i] = i;
    gl_series r = {"r", NULL, ramp, 100, -1};
    gl_chart_opts zoom = {.last_n = 10, .glyphs = GL_GLYPHS_ASCII};
    t = chart(30, 8, &r, 1, zoom, false);
    ok(t && strncmp(row_of(t, 0), "99+", 3) == 0 && strncmp(row_of(t, 5), "90+", 3) == 0,
       "last_n 10: y from 90 to 99 (%s / %s)", t ? row_of(t, 0) : "", t ? row_of(t, 5) : "");
    ok(t && strcmp(row_of(t, 7), "   90                       99") == 0, "last_n 10: steps 90 to 99");
    free(t);

    /* Explicit x: the last 10 steps of the dense series decide the window. */
    double xs[100], vx[3] = {0, 50, 95}, vy[3] = {5, 5, 5};
    for (int i = 0; i < 100; i++) xs[i] = 1000 + 10 * i;
    for (int i = 0; i < 3; i++) vx[i] = 1000 + 10 * vx[i];
    gl_series two[2] = {{"train", xs, ramp, 100, 33}, {"val", vx, vy, 3, 208}};
    t = chart(40, 8, two, 2, zoom, false);
    ok(t && strstr(row_of(t, 7), "1900") && strstr(row_of(t, 7), "1990"), "last_n with x: steps 1900 to 1990 (%s)",
       t ? row_of(t, 7) : "");
    free(t);
    double big[3] = {12000, 30000, 45678};
    gl_series b = {"b", NULL, big, 3, -1};
    t = chart(30, 8, &b, 1, (gl_chart_opts){0}, false);
    ok(t && strstr(t, "46k┤") && strstr(t, "12k┤"), "large values read 46k .. 12k");
    free(t);
}

static void test_legend_title(void)
{
    double a[3] = {1, 2, 3}, b[3] = {3, 2, 1};
    gl_series s[2] = {{"train", NULL, a, 3, 33}, {"val", NULL, b, 3, 208}};
    gl_chart_opts o = {.title = "loss", .legend = true, .glyphs = GL_GLYPHS_ASCII};
    char *t = chart(30, 10, s, 2, o, false);
    ok(t && strcmp(row_of(t, 0), "             loss") == 0, "title centred on the first row");
    ok(t && strcmp(row_of(t, 9), "    * train  o val") == 0, "legend with each series' mark (%s)",
       t ? row_of(t, 9) : "");
    ok(t && strchr(row_of(t, 1), 'o') && strchr(row_of(t, 1), '*'), "both series drawn, each with its mark");
    free(t);
    o.glyphs = GL_GLYPHS_BRAILLE;
    t = chart(30, 10, s, 2, o, true);
    ok(t && strstr(t, "\x1b[0;1mloss") != NULL, "ANSI: the title is bold");
    ok(t && strstr(t, "\x1b[0;38;5;33m■") && strstr(t, "\x1b[0;38;5;208m■"),
       "ANSI: legend marks in series colours");
    ok(t && strstr(t, "\x1b[0;38;5;208m⠈") != NULL, "ANSI: dots in the series colour");
    free(t);
}

static void test_sizes(void)
{
    double y[50];
    for (int i = 0; i < 50; i++) y[i] = sin(i * 0.3);
    gl_series s[2] = {{"a", NULL, y, 50, 33}, {NULL, NULL, y, 25, 208}};
    static const int sizes[][2] = {{1, 1}, {2, 1}, {1, 2}, {3, 2}, {20, 5}, {5, 3}, {8, 20}, {400, 200}};
    for (int g = 0; g < 3; g++)
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            int w = sizes[i][0], h = sizes[i][1];
            gl_chart_opts o = {.title = "a title longer than the canvas", .legend = true, .glyphs = (gl_glyphs)g};
            char *t = chart(w, h, s, 2, o, false);
            bool fits = t && count_rows(t) == h;
            for (int r = 0; fits && r < h; r++) fits = row_cells(row_of(t, r)) <= w;
            ok(fits, "%dx%d canvas, glyph set %d: %d rows of at most %d cells", w, h, g, h, w);
            free(t);
        }
    char *t = chart(20, 5, s, 2, (gl_chart_opts){.title = "loss", .legend = true}, false);
    ok(t && strstr(t, "loss") && strchr(row_of(t, 1), '1') && strstr(row_of(t, 1), "┤"),
       "20x5: title, ticks and plot still there");
    free(t);
    t = chart(30, 8, s, 2, (gl_chart_opts){.legend = true}, false);
    ok(t && strstr(t, "series 2"), "an unnamed series is 'series 2' in the legend");
    free(t);
    gl_canvas c;
    gl_canvas_init(&c, 10, 4);
    gl_series bad = {"bad", NULL, NULL, 3, -1};
    ok(gl_chart_draw(&c, &bad, 1, NULL) == GL_EINVAL, "a series without values is an error: %s", gl_error_message());
    ok(gl_chart_draw(&c, s, 1, NULL) == GL_OK, "NULL options are the defaults");
    double extreme[4] = {-1e308, 1e308, INFINITY, 5};
    gl_series ex = {"ex", extreme, extreme, 4, -1};
    ok(gl_chart_draw(&c, &ex, 1, NULL) == GL_OK, "a range that overflows doubles draws without crashing");
    ok(gl_chart_draw(&c, s, 5000, NULL) == GL_EINVAL, "too many series is an error: %s", gl_error_message());
    gl_canvas_free(&c);
}

static void test_speed(void)
{
    static double y[100000];
    for (int i = 0; i < 100000; i++) y[i] = sin(i * 1e-3) + (i % 7) * 0.01;
    gl_series s = {"a", NULL, y, 100000, 33};
    gl_canvas c;
    gl_canvas_init(&c, 200, 60);
    gl_chart_opts o = {.legend = true, .title = "speed"};
    double best = 1e9;
    for (int r = 0; r < 7; r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        gl_chart_draw(&c, &s, 1, &o);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) * 1e-6;
        best = ms < best ? ms : best;
    }
#if defined(__SANITIZE_ADDRESS__)
    ok(true, "# SKIP timing under a sanitizer (%.2f ms)", best);
#else
    ok(best < 10, "200x60 chart of 100k points in %.2f ms (< 10)", best);
#endif
    gl_canvas_free(&c);
}

static void test_colours(void)
{
    static const struct {
        uint8_t r, g, b;
        int want;
        const char *name;
    } cases[] = {
        {255, 0, 0, 196, "red"}, {0, 255, 0, 46, "green"}, {0, 0, 255, 21, "blue"}, {255, 255, 255, 231, "white"},
        {0, 0, 0, 16, "black"}, {128, 128, 128, 244, "grey 128"}, {238, 238, 238, 255, "grey 238"},
        {95, 135, 175, 67, "cube (1,2,3)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ok(gl_color_xterm256(cases[i].r, cases[i].g, cases[i].b) == cases[i].want, "%s is xterm colour %d (got %d)",
           cases[i].name, cases[i].want, gl_color_xterm256(cases[i].r, cases[i].g, cases[i].b));

    /* [2,5,3]: the five colours over black, as f32 (2.0 and -1 clamp). */
    float px[2 * 5 * 3] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 2.0f, 1, 1, -1, 0, 0};
    gl_canvas c;
    gl_canvas_init(&c, 5, 1);
    ok(gl_image_draw(&c, px, true, 2, 5, 3, GL_GLYPHS_BLOCKS) == GL_OK, "draw a 2x5 RGB f32 image");
    static const int fg[5] = {196, 46, 21, 231, 16};
    bool all = true;
    for (int i = 0; i < 5; i++)
        all &= strcmp(c.cells[i].text, "▀") == 0 && c.cells[i].fg == fg[i] && c.cells[i].bg == 16;
    ok(all, "half blocks: fg = upper pixel (red green blue white black), bg = lower (black)");
    gl_canvas_free(&c);

    uint8_t checker[4] = {255, 0, 0, 255};
    gl_canvas_init(&c, 2, 1);
    gl_image_draw(&c, checker, false, 2, 2, 1, GL_GLYPHS_BLOCKS);
    ok(c.cells[0].fg == 231 && c.cells[0].bg == 16 && c.cells[1].fg == 16 && c.cells[1].bg == 231,
       "2x2 grey checkerboard: white over black, black over white");
    char *t = gl_canvas_to_string(&c, true);
    check_text(t, "\x1b[0;38;5;231;48;5;16m▀\x1b[0;38;5;16;48;5;231m▀\x1b[0m", "checkerboard as ANSI text");
    gl_canvas_free(&c);

    uint8_t bars[6] = {0, 128, 255, 0, 128, 255};
    gl_canvas_init(&c, 3, 1);
    gl_image_draw(&c, bars, false, 2, 3, 1, GL_GLYPHS_ASCII);
    check_text(gl_canvas_to_string(&c, false), " +@", "ASCII grey ramp: black, mid grey, white");
    gl_canvas_free(&c);
    ok(gl_image_draw(&c, bars, false, 2, 3, 2, GL_GLYPHS_ASCII) == GL_EINVAL, "2 channels is an error: %s",
       gl_error_message());
}

static void test_scaling(void)
{
    int cols, rows;
    gl_image_fit(4, 8, 40, 40, &cols, &rows);
    ok(cols == 40 && rows == 10, "4x8 into 40x40 cells: 40x10 (a cell is 1 wide, 2 tall; got %dx%d)", cols, rows);
    gl_image_fit(28, 28, 80, 24, &cols, &rows);
    ok(cols == 48 && rows == 24, "28x28 into 80x24: 48x24 (got %dx%d)", cols, rows);
    gl_image_fit(100, 50, 10, 10, &cols, &rows);
    ok(cols == 10 && rows == 10, "100x50 into 10x10: 10x10 (got %dx%d)", cols, rows);
    gl_image_fit(1, 1000, 10, 10, &cols, &rows);
    ok(cols == 10 && rows == 1, "1x1000 into 10x10: 10x1 (got %dx%d)", cols, rows);

    /* A 4x4 image, left half white: in a 2x1 canvas, box-averaged to 2x2 pixels. */
    uint8_t img[16];
    for (int i = 0; i < 16; i++) img[i] = (i % 4) < 2 ? 255 : 0;
    gl_canvas c;
    gl_canvas_init(&c, 8, 1);
    gl_image_draw(&c, img, false, 4, 4, 1, GL_GLYPHS_BLOCKS);
    ok(c.cells[0].fg == 231 && c.cells[0].bg == 231 && c.cells[1].fg == 16 && strcmp(c.cells[2].text, " ") == 0,
       "downscaled by 2 keeping the aspect: 2 cells wide, the rest blank");
    gl_canvas_free(&c);
    uint8_t checker[4] = {255, 0, 0, 255};
    gl_canvas_init(&c, 4, 4);
    gl_image_draw(&c, checker, false, 2, 2, 1, GL_GLYPHS_BLOCKS);
    ok(c.cells[0].fg == 231 && c.cells[0].bg == 231 && c.cells[1].fg == 231 && c.cells[2].fg == 16 &&
           c.cells[4].fg == 16 && c.cells[4].bg == 16 && c.cells[6].fg == 231 && c.cells[8].text[0] == ' ',
       "2x2 checkerboard enlarged to 4x4 pixels (4x2 cells), nearest neighbour");
    gl_canvas_free(&c);
}

int main(void)
{
    test_canvas();
    test_numbers();
    test_ascii_charts();
    test_braille();
    test_axes();
    test_legend_title();
    test_sizes();
    test_colours();
    test_scaling();
    test_speed();
    return done_testing();
}
