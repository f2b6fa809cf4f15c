/* Text charts and half-block images drawn into cell grids (see chart.h).
 *
 * A chart is drawn in three steps: the layout (title, plot area, axes,
 * labels, legend, each dropped in turn when the canvas is too small), the
 * series rasterized into a grid of sub-cell dots (braille 2x4, quadrant
 * blocks 2x2, ASCII 1x1 per cell), then the dots turned into glyphs.
 * Rasterizing keeps one column of dots at a time (its min, max, first and
 * last point), so 100k points cost 100k cheap steps, and consecutive
 * columns are joined by a line so that curves stay continuous. */
#include "core/chart.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CELLS ((int64_t)1 << 24)

/* --- canvas ------------------------------------------------------------------------ */

static void cell_put(gl_canvas *c, int x, int y, const char *text, int16_t fg, int16_t bg, bool bold)
{
    if (x < 0 || y < 0 || x >= c->width || y >= c->height) return;
    gl_cell *cell = &c->cells[(size_t)y * (size_t)c->width + (size_t)x];
    snprintf(cell->text, sizeof cell->text, "%s", text);
    cell->fg = fg;
    cell->bg = bg;
    cell->bold = bold;
}

static void canvas_clear(gl_canvas *c)
{
    static const gl_cell blank = {.text = " ", .fg = -1, .bg = -1, .bold = false};
    for (size_t i = 0; i < (size_t)c->width * (size_t)c->height; i++) c->cells[i] = blank;
}

gl_status gl_canvas_init(gl_canvas *c, int width, int height)
{
    c->width = c->height = 0;
    c->cells = NULL;
    if (width < 1 || height < 1 || (int64_t)width * height > MAX_CELLS)
        return gl_error(GL_EINVAL, "canvas: size %dx%d out of range (at least 1x1, at most %lld cells)", width,
                        height, (long long)MAX_CELLS);
    c->cells = malloc((size_t)width * (size_t)height * sizeof *c->cells);
    if (!c->cells) return gl_error(GL_ENOMEM, "canvas: out of memory for %dx%d cells", width, height);
    c->width = width;
    c->height = height;
    canvas_clear(c);
    return GL_OK;
}

void gl_canvas_free(gl_canvas *c)
{
    free(c->cells);
    c->cells = NULL;
    c->width = c->height = 0;
}

/* Bytes of the UTF-8 character at s, or 0 when s does not start a valid one. */
static int utf8_len(const char *s)
{
    unsigned char b = (unsigned char)s[0];
    int n = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) return 0;
    return n;
}

/* Writes text from (x, y) rightwards, one character per cell, at most maxw
 * cells; invalid UTF-8 bytes show as '?'. Returns the cells used. */
static int canvas_text(gl_canvas *c, int x, int y, const char *text, int maxw, int16_t fg, bool bold)
{
    int used = 0;
    while (*text && used < maxw) {
        char ch[8] = "?";
        int n = utf8_len(text);
        if (n > 0) memcpy(ch, text, (size_t)n), ch[n] = '\0';
        text += n > 0 ? n : 1;
        cell_put(c, x + used, y, ch, fg, -1, bold);
        used++;
    }
    return used;
}

static int text_cells(const char *text)
{
    int n = 0;
    while (*text) {
        int k = utf8_len(text);
        text += k > 0 ? k : 1;
        n++;
    }
    return n;
}

typedef struct {
    char *p;
    size_t n, cap;
    bool failed;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n)
{
    if (b->failed) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_puts(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static bool cell_blank(const gl_cell *cell, bool ansi)
{
    return (cell->text[0] == '\0' || (cell->text[0] == ' ' && cell->text[1] == '\0')) && (!ansi || cell->bg < 0);
}

/* One SGR sequence that resets and then sets the cell's attributes. */
static void sb_sgr(strbuf *b, const gl_cell *cell)
{
    char buf[48];
    int n = snprintf(buf, sizeof buf, "\x1b[0%s", cell->bold ? ";1" : "");
    if (cell->fg >= 0) n += snprintf(buf + n, sizeof buf - (size_t)n, ";38;5;%d", cell->fg);
    if (cell->bg >= 0) n += snprintf(buf + n, sizeof buf - (size_t)n, ";48;5;%d", cell->bg);
    snprintf(buf + n, sizeof buf - (size_t)n, "m");
    sb_puts(b, buf);
}

char *gl_canvas_to_string(const gl_canvas *c, bool ansi)
{
    strbuf b = {0};
    sb_put(&b, "", 0);
    for (int y = 0; y < c->height; y++) {
        const gl_cell *row = &c->cells[(size_t)y * (size_t)c->width];
        int end = c->width;
        while (end > 0 && cell_blank(&row[end - 1], ansi)) end--;
        gl_cell cur = {.fg = -1, .bg = -1, .bold = false};
        for (int x = 0; x < end; x++) {
            const gl_cell *cell = &row[x];
            if (ansi && (cell->fg != cur.fg || cell->bg != cur.bg || cell->bold != cur.bold)) {
                sb_sgr(&b, cell);
                cur = *cell;
            }
            sb_puts(&b, cell->text[0] ? cell->text : " ");
        }
        if (ansi && (cur.fg >= 0 || cur.bg >= 0 || cur.bold)) sb_puts(&b, "\x1b[0m");
        if (y + 1 < c->height) sb_put(&b, "\n", 1);
    }
    if (b.failed) {
        free(b.p);
        return gl_error_null(GL_ENOMEM, "canvas: out of memory for the text of %dx%d cells", c->width, c->height);
    }
    return b.p;
}

/* --- numbers ------------------------------------------------------------------------ */

/* "%.{prec-1}e" without trailing mantissa zeros nor exponent padding: 1.2e-3. */
static void format_exp(double v, int prec, char *buf, size_t n)
{
    char tmp[48];
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
    char *e = strchr(tmp, 'e');
    if (!e) {
        snprintf(buf, n, "%s", tmp);
        return;
    }
    char *m = e;
    if (memchr(tmp, '.', (size_t)(e - tmp))) {
        while (m[-1] == '0') m--;
        if (m[-1] == '.') m--;
    }
    int ex = atoi(e + 1);
    snprintf(buf, n, "%.*se%d", (int)(m - tmp), tmp, ex);
}

char *gl_chart_format_number(double v, int prec, char *buf, size_t n)
{
    static const char suffix[] = "kMGT";
    if (prec < 1) prec = 1;
    if (prec > 9) prec = 9;
    double a = fabs(v);
    if (isnan(v)) snprintf(buf, n, "nan");
    else if (isinf(v)) snprintf(buf, n, v > 0 ? "inf" : "-inf");
    else if (v == 0) snprintf(buf, n, "0");
    else if (a < 0.01) format_exp(v, prec, buf, n);
    else {
        /* Plain for [0.01, 1000), then k/M/G/T; moves up a suffix when
         * rounding reaches 1000 (999.97 -> "1k"). */
        double scale = 1;
        int s = -1;
        for (;;) {
            /* at least the integer digits, or %g would switch to e-notation */
            char tmp[48];
            double u = fabs(v / scale);
            int p = u >= 1 ? (int)floor(log10(u)) + 1 : 0;
            snprintf(tmp, sizeof tmp, "%.*g", p > prec ? p : prec, v / scale);
            if (!strchr(tmp, 'e') && fabs(atof(tmp)) < 1000) {
                snprintf(buf, n, "%s%.*s", tmp, s >= 0 ? 1 : 0, s >= 0 ? &suffix[s] : "");
                break;
            }
            if (s == 3) {
                format_exp(v, prec, buf, n);
                break;
            }
            s++;
            scale *= 1000;
        }
    }
    return buf;
}

/* Step labels: whole numbers written out up to a million, others compact. */
static void format_x(double v, char *buf, size_t n)
{
    if (v == floor(v) && fabs(v) < 1e6) snprintf(buf, n, "%.0f", v);
    else gl_chart_format_number(v, 3, buf, n);
}

/* --- chart layout and rasterizing -------------------------------------------------- */

static const char ascii_marks[] = "*o+x#@%&";
#define MAX_SERIES 1024

typedef struct {
    gl_glyphs glyphs;
    int x0, y0, pw, ph; /* plot area in cells */
    int sx, sy;         /* dots per cell */
    int W, H;           /* plot area in dots */
    double xmin, xmax, ymin, ymax; /* ymin/ymax in log10 when log_y */
    uint8_t *mask;      /* pw * ph dot masks */
    int16_t *owner;     /* the series that last drew into each cell (read where mask is set) */
} plot;

static uint8_t dot_bit(gl_glyphs g, int dx, int dy)
{
    /* Braille dots 1-2-3-7 down the left column, 4-5-6-8 down the right. */
    static const uint8_t braille[2][4] = {{0x01, 0x02, 0x04, 0x40}, {0x08, 0x10, 0x20, 0x80}};
    if (g == GL_GLYPHS_BRAILLE) return braille[dx][dy];
    if (g == GL_GLYPHS_BLOCKS) return (uint8_t)(1u << (dy * 2 + dx)); /* TL, TR, BL, BR */
    return 1;
}

static void dot_set(plot *p, int px, int py, int16_t s)
{
    if (px < 0 || py < 0 || px >= p->W || py >= p->H) return;
    size_t i = (size_t)(py / p->sy) * (size_t)p->pw + (size_t)(px / p->sx);
    p->mask[i] |= dot_bit(p->glyphs, px % p->sx, py % p->sy);
    p->owner[i] = s;
}

static void dot_line(plot *p, int x0, int y0, int x1, int y1, int16_t s)
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0);
    int stx = x0 < x1 ? 1 : -1, sty = y0 < y1 ? 1 : -1, err = dx + dy;
    for (;;) {
        dot_set(p, x0, y0, s);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += stx;
        if (e2 <= dx) err += dx, y0 += sty;
    }
}

static inline double point_x(const gl_series *s, int64_t i) { return s->x ? s->x[i] : (double)i; }

/* Whether point i is drawn: finite, positive on a log axis, inside the zoom. */
static inline bool point_ok(const gl_series *s, int64_t i, bool log_y, double cutoff)
{
    double x = point_x(s, i), y = s->y[i];
    return isfinite(x) && isfinite(y) && x >= cutoff && (!log_y || y > 0);
}

/* v in [lo, hi] to 0..n-1 as a scale and an offset: (int)(v * a + b). */
typedef struct {
    double a, b;
    int n;
} axis_map;

static axis_map axis_make(double lo, double hi, int n)
{
    axis_map m = {0, (n - 1) / 2 + 0.5, n};
    if (n > 1 && hi > lo) m.a = (n - 1) / (hi - lo), m.b = 0.5 - lo * m.a;
    return m;
}

static inline int axis_at(const axis_map *m, double v)
{
    double f = v * m->a + m->b;
    return f < 1 ? 0 : f >= m->n ? m->n - 1 : (int)f;
}

/* One series: per dot column, its span from min to max, joined to the
 * previous column from that column's last point to this one's first. */
static void plot_series(plot *p, const gl_series *s, int16_t idx, bool log_y, double cutoff)
{
    axis_map mx = axis_make(p->xmin, p->xmax, p->W), my = axis_make(p->ymin, p->ymax, p->H);
    bool have_col = false, have_prev = false;
    int col = 0, first = 0, last = 0, lo = 0, hi = 0, pcol = 0, plast = 0;
    for (int64_t i = 0; i <= s->n; i++) {
        bool ok = i < s->n && point_ok(s, i, log_y, cutoff);
        int px = 0, py = 0;
        if (ok) {
            double y = log_y ? log10(s->y[i]) : s->y[i];
            px = axis_at(&mx, point_x(s, i));
            py = p->H - 1 - axis_at(&my, y);
            if (have_col && px == col) {
                last = py;
                lo = py < lo ? py : lo;
                hi = py > hi ? py : hi;
                continue;
            }
        }
        if (have_col) {
            if (have_prev) dot_line(p, pcol, plast, col, first, idx);
            dot_line(p, col, lo, col, hi, idx);
            have_prev = true;
            pcol = col;
            plast = last;
            have_col = false;
        }
        if (ok) {
            have_col = true;
            col = px;
            first = last = lo = hi = py;
        } else if (i < s->n) {
            have_prev = false; /* a gap */
        }
    }
}

static void glyph_text(gl_glyphs g, uint8_t m, int16_t owner, char out[8])
{
    static const char *quadrants[16] = {" ", "▘", "▝", "▀", "▖", "▌", "▞", "▛",
                                        "▗", "▚", "▐", "▜", "▄", "▙", "▟", "█"};
    if (g == GL_GLYPHS_BRAILLE) {
        unsigned cp = 0x2800u + m;
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        out[3] = '\0';
    } else if (g == GL_GLYPHS_BLOCKS) {
        snprintf(out, 8, "%s", quadrants[m & 15]);
    } else {
        out[0] = ascii_marks[owner % (int)(sizeof ascii_marks - 1)];
        out[1] = '\0';
    }
}

/* 3 to 5 ticks, evenly spaced rows when ph - 1 allows it. */
static int tick_count(int ph)
{
    if (ph < 3) return ph;
    for (int k = 5; k >= 3; k--)
        if ((ph - 1) >= 2 * (k - 1) && (ph - 1) % (k - 1) == 0) return k;
    for (int k = 5; k >= 3; k--)
        if ((ph - 1) >= 3 * (k - 1)) return k;
    return 3;
}

#define MAX_TICKS 5
#define LABEL_LEN 24

/* The roundest number in [lo, hi]: 0 when inside, else a multiple of the
 * largest power of ten that has one there (the one nearest target); *digits
 * gets its significant digits. */
static double roundest(double lo, double hi, double target, int *digits)
{
    *digits = 1;
    if (lo <= 0 && hi >= 0) return 0;
    double m = fmax(fabs(lo), fabs(hi));
    if (!isfinite(m)) return target;
    for (int e = (int)floor(log10(m)); e > -300; e--) {
        double step = pow(10, e), a = ceil(lo / step), b = floor(hi / step);
        if (a > b) continue;
        double k = fmin(fmax(round(target / step), a), b), v = k * step;
        *digits = (int)floor(log10(fabs(v)) + 1e-9) - e + 1;
        if (*digits < 1) *digits = 1;
        return v;
    }
    return target;
}

/* Tick rows and their labels. A label is the roundest value among those
 * that land in its row (a dot stands for the values that round to it), the
 * one nearest the top of the range on the top row, the bottom on the bottom
 * row: a curve peaking at 6.999 reads "7" and a log axis reads decades.
 * Returns the widest label. */
static int y_ticks(const plot *p, bool log_y, int k, int rows[], char labels[][LABEL_LEN])
{
    int H = p->ph * p->sy;
    double range = p->ymax - p->ymin, half = H > 1 ? range / (H - 1) / 2 * 0.999 : range / 2;
    int w = 0;
    for (int i = 0; i < k; i++) {
        rows[i] = k == 1 ? 0 : (int)lround((double)i * (p->ph - 1) / (k - 1));
        double lo = p->ymin - half, hi = p->ymax + half;
        if (H > 1) {
            hi = p->ymax - (double)(rows[i] * p->sy) / (H - 1) * range + half;
            lo = p->ymax - (double)(rows[i] * p->sy + p->sy - 1) / (H - 1) * range - half;
        }
        /* beyond the data by a hair at most: 6.99999 may read 7, 1 not 0 */
        hi = fmin(hi, p->ymax + range * 0.01), lo = fmax(lo, p->ymin - range * 0.01);
        double target = i == 0 ? p->ymax : i == k - 1 ? p->ymin : (lo + hi) / 2;
        if (log_y) lo = pow(10, lo), hi = pow(10, hi), target = pow(10, target);
        int digits;
        double v = roundest(lo, hi, target, &digits);
        gl_chart_format_number(v, digits, labels[i], LABEL_LEN);
        int l = (int)strlen(labels[i]);
        w = l > w ? l : w;
    }
    return w;
}

/* The smallest x still shown with last_n: of each series longer than n,
 * the x of its n-th last point; the largest of those. */
static double zoom_cutoff(const gl_series *series, int n_series, int64_t last_n)
{
    double cutoff = -INFINITY;
    if (last_n <= 0) return cutoff;
    for (int s = 0; s < n_series; s++) {
        if (series[s].n <= last_n) continue;
        double x = point_x(&series[s], series[s].n - last_n);
        if (isfinite(x) && x > cutoff) cutoff = x;
    }
    return cutoff;
}

static void draw_legend(gl_canvas *c, const gl_series *series, int n_series, gl_glyphs g, int x, int y)
{
    for (int s = 0; s < n_series && x < c->width; s++) {
        char mark[8], name[32];
        if (g == GL_GLYPHS_ASCII) glyph_text(g, 1, (int16_t)s, mark);
        else snprintf(mark, sizeof mark, "■");
        const char *label = series[s].name;
        if (!label) {
            snprintf(name, sizeof name, "series %d", s + 1);
            label = name;
        }
        x += canvas_text(c, x, y, mark, c->width - x, series[s].color, false);
        x += canvas_text(c, x, y, " ", c->width - x, -1, false);
        x += canvas_text(c, x, y, label, c->width - x, series[s].color, false);
        x += canvas_text(c, x, y, "  ", c->width - x, -1, false);
    }
}

gl_status gl_chart_draw(gl_canvas *c, const gl_series *series, int n_series, const gl_chart_opts *opts)
{
    static const gl_chart_opts defaults = {0};
    if (!c || !c->cells) return gl_error(GL_EINVAL, "chart: canvas is not initialized");
    if (n_series < 0 || (n_series > 0 && !series)) return gl_error(GL_EINVAL, "chart: no series array");
    if (n_series > MAX_SERIES) return gl_error(GL_EINVAL, "chart: %d series (at most %d)", n_series, MAX_SERIES);
    if (!opts) opts = &defaults;
    for (int s = 0; s < n_series; s++)
        if (series[s].n < 0 || (series[s].n > 0 && !series[s].y))
            return gl_error(GL_EINVAL, "chart: series %d has no values", s + 1);
    canvas_clear(c);

    plot p = {.glyphs = opts->glyphs};
    p.sx = opts->glyphs == GL_GLYPHS_BRAILLE ? 2 : opts->glyphs == GL_GLYPHS_BLOCKS ? 2 : 1;
    p.sy = opts->glyphs == GL_GLYPHS_BRAILLE ? 4 : opts->glyphs == GL_GLYPHS_BLOCKS ? 2 : 1;
    bool ascii = opts->glyphs == GL_GLYPHS_ASCII;

    /* The data's extent. */
    double cutoff = zoom_cutoff(series, n_series, opts->last_n);
    bool any = false;
    p.xmin = p.ymin = INFINITY;
    p.xmax = p.ymax = -INFINITY;
    for (int s = 0; s < n_series; s++)
        for (int64_t i = 0; i < series[s].n; i++) {
            if (!point_ok(&series[s], i, opts->log_y, cutoff)) continue;
            double x = point_x(&series[s], i), y = opts->log_y ? log10(series[s].y[i]) : series[s].y[i];
            if (x < p.xmin) p.xmin = x;
            if (x > p.xmax) p.xmax = x;
            if (y < p.ymin) p.ymin = y;
            if (y > p.ymax) p.ymax = y;
            any = true;
        }
    if (any && p.ymin == p.ymax) { /* a constant: a flat line in the middle */
        double d = p.ymin == 0 ? 1 : fabs(p.ymin) * 0.1;
        p.ymin -= d, p.ymax += d;
    }

    /* Rows: the plot keeps at least two (one on a one-row canvas); then the
     * x axis, its labels, the title and the legend, while they fit. */
    int rows_left = c->height, min_plot = c->height < 2 ? c->height : 2;
    bool has_axis = false, has_xlabels = false, has_title = false, has_legend = false;
#define TAKE(flag, want)                                \
    if ((want) && rows_left - 1 >= min_plot) {          \
        flag = true;                                    \
        rows_left--;                                    \
    }
    TAKE(has_axis, true);
    TAKE(has_xlabels, any);
    TAKE(has_title, opts->title && opts->title[0]);
    TAKE(has_legend, opts->legend && n_series > 0);
#undef TAKE
    p.ph = rows_left;
    p.y0 = has_title ? 1 : 0;

    /* Columns: tick labels, the axis, the plot (labels go first when narrow). */
    int rows[MAX_TICKS];
    char labels[MAX_TICKS][LABEL_LEN];
    int k = any ? tick_count(p.ph) : 0;
    int lw = any ? y_ticks(&p, opts->log_y, k, rows, labels) : 0;
    if (lw + 2 > c->width) k = 0, lw = 0;
    int ax = c->width >= 2 ? lw : -1; /* the axis column */
    p.x0 = ax + 1;
    p.pw = c->width - p.x0;
    p.W = p.pw * p.sx;
    p.H = p.ph * p.sy;

    const char *vbar = ascii ? "|" : "│", *tick = ascii ? "+" : "┤";
    const char *corner = ascii ? "+" : "└", *hbar = ascii ? "-" : "─";
    if (ax >= 0)
        for (int r = 0; r < p.ph; r++) cell_put(c, ax, p.y0 + r, vbar, -1, -1, false);
    for (int i = 0; i < k; i++) {
        int len = (int)strlen(labels[i]);
        canvas_text(c, lw - len, p.y0 + rows[i], labels[i], len, -1, false);
        cell_put(c, ax, p.y0 + rows[i], tick, -1, -1, false);
    }
    int y_axis = p.y0 + p.ph;
    if (has_axis) {
        if (ax >= 0) cell_put(c, ax, y_axis, corner, -1, -1, false);
        for (int x = p.x0; x < c->width; x++) cell_put(c, x, y_axis, hbar, -1, -1, false);
    }
    if (has_xlabels) {
        char a[LABEL_LEN], b[LABEL_LEN];
        format_x(p.xmin, a, sizeof a);
        format_x(p.xmax, b, sizeof b);
        int la = (int)strlen(a), lb = (int)strlen(b);
        canvas_text(c, p.x0, y_axis + 1, a, p.pw, -1, false);
        if (p.xmax > p.xmin && la + 1 + lb <= p.pw) canvas_text(c, c->width - lb, y_axis + 1, b, lb, -1, false);
    }
    if (has_title) {
        int n = text_cells(opts->title);
        canvas_text(c, n < c->width ? (c->width - n) / 2 : 0, 0, opts->title, c->width, -1, true);
    }
    if (has_legend) draw_legend(c, series, n_series, opts->glyphs, p.x0, y_axis + (has_axis ? 1 : 0) + has_xlabels);

    if (!any) {
        const char *msg = "no data";
        int n = (int)strlen(msg);
        canvas_text(c, p.x0 + (n < p.pw ? (p.pw - n) / 2 : 0), p.y0 + (p.ph - 1) / 2, msg, p.pw, -1, false);
        return GL_OK;
    }

    size_t ncell = (size_t)p.pw * (size_t)p.ph;
    p.mask = calloc(ncell, 1);
    p.owner = malloc(ncell * sizeof *p.owner);
    if (!p.mask || !p.owner) {
        free(p.mask);
        free(p.owner);
        return gl_error(GL_ENOMEM, "chart: out of memory for a %dx%d plot", p.pw, p.ph);
    }
    for (int s = 0; s < n_series; s++) plot_series(&p, &series[s], (int16_t)s, opts->log_y, cutoff);
    for (int r = 0; r < p.ph; r++)
        for (int x = 0; x < p.pw; x++) {
            size_t i = (size_t)r * (size_t)p.pw + (size_t)x;
            if (!p.mask[i]) continue;
            char text[8];
            glyph_text(opts->glyphs, p.mask[i], p.owner[i], text);
            cell_put(c, p.x0 + x, p.y0 + r, text, series[p.owner[i]].color, -1, false);
        }
    free(p.mask);
    free(p.owner);
    return GL_OK;
}

/* --- images ------------------------------------------------------------------------ */

int16_t gl_color_xterm256(uint8_t r, uint8_t g, uint8_t b)
{
    static const int level[6] = {0, 95, 135, 175, 215, 255};
    int rgb[3] = {r, g, b}, cube[3];
    long dc = 0;
    for (int i = 0; i < 3; i++) {
        int v = rgb[i];
        cube[i] = v < 48 ? 0 : v < 115 ? 1 : (v - 35) / 40;
        long d = v - level[cube[i]];
        dc += d * d;
    }
    int avg = (r + g + b) / 3;
    int gi = avg < 8 ? 0 : avg > 238 ? 23 : (avg - 3) / 10;
    int gv = 8 + 10 * gi;
    long dg = (long)(r - gv) * (r - gv) + (long)(g - gv) * (g - gv) + (long)(b - gv) * (b - gv);
    if (dg < dc) return (int16_t)(232 + gi);
    return (int16_t)(16 + 36 * cube[0] + 6 * cube[1] + cube[2]);
}

/* The image's size in pixels once scaled into mw x mh pixels. */
static void fit_pixels(int64_t h, int64_t w, int mw, int mh, int *ow, int *oh)
{
    *ow = *oh = 0;
    if (h < 1 || w < 1 || mw < 1 || mh < 1) return;
    double s = fmin((double)mw / (double)w, (double)mh / (double)h);
    double fw = floor((double)w * s + 1e-9), fh = floor((double)h * s + 1e-9);
    *ow = fw < 1 ? 1 : fw > mw ? mw : (int)fw;
    *oh = fh < 1 ? 1 : fh > mh ? mh : (int)fh;
}

void gl_image_fit(int64_t h, int64_t w, int max_cols, int max_rows, int *cols, int *rows)
{
    int ow, oh;
    fit_pixels(h, w, max_cols, max_rows > INT32_MAX / 2 ? INT32_MAX : max_rows * 2, &ow, &oh);
    *cols = ow;
    *rows = (oh + 1) / 2;
}

static double pixel_value(const void *pixels, bool is_f32, int64_t i)
{
    if (!is_f32) return ((const uint8_t *)pixels)[i];
    float v = ((const float *)pixels)[i];
    return v > 0 ? (v < 1 ? v * 255.0 : 255.0) : 0; /* NaN -> 0 */
}

gl_status gl_image_draw(gl_canvas *c, const void *pixels, bool is_f32, int64_t h, int64_t w, int channels,
                        gl_glyphs glyphs)
{
    static const char ramp[] = " .:-=+*#%@";
    if (!c || !c->cells) return gl_error(GL_EINVAL, "image: canvas is not initialized");
    if (!pixels || h < 1 || w < 1 || (channels != 1 && channels != 3))
        return gl_error(GL_EINVAL, "image: need a [H,W] or [H,W,3] image (got %lldx%lld with %d channels)",
                        (long long)h, (long long)w, channels);
    canvas_clear(c);
    int ow, oh;
    fit_pixels(h, w, c->width, c->height * 2, &ow, &oh);
    uint8_t *rgb = malloc((size_t)ow * (size_t)oh * 3);
    if (!rgb) return gl_error(GL_ENOMEM, "image: out of memory for %dx%d pixels", ow, oh);

    /* Box filter: each output pixel averages the source pixels it covers
     * (at least one, so enlarging is nearest-neighbour). */
    for (int oy = 0; oy < oh; oy++) {
        int64_t y0 = oy * h / oh, y1 = (oy + 1) * h / oh;
        if (y1 <= y0) y1 = y0 + 1;
        for (int ox = 0; ox < ow; ox++) {
            int64_t x0 = ox * w / ow, x1 = (ox + 1) * w / ow;
            if (x1 <= x0) x1 = x0 + 1;
            double sum[3] = {0, 0, 0};
            for (int64_t y = y0; y < y1; y++)
                for (int64_t x = x0; x < x1; x++)
                    for (int ch = 0; ch < channels; ch++)
                        sum[ch] += pixel_value(pixels, is_f32, (y * w + x) * channels + ch);
            double area = (double)((y1 - y0) * (x1 - x0));
            uint8_t *out = &rgb[((size_t)oy * (size_t)ow + (size_t)ox) * 3];
            for (int ch = 0; ch < 3; ch++) out[ch] = (uint8_t)lround(sum[channels == 3 ? ch : 0] / area);
        }
    }

    for (int cy = 0; cy < (oh + 1) / 2; cy++)
        for (int cx = 0; cx < ow; cx++) {
            const uint8_t *up = &rgb[((size_t)(2 * cy) * (size_t)ow + (size_t)cx) * 3];
            const uint8_t *lo = 2 * cy + 1 < oh ? up + (size_t)ow * 3 : NULL;
            if (glyphs == GL_GLYPHS_ASCII) {
                double g = 0.299 * up[0] + 0.587 * up[1] + 0.114 * up[2];
                if (lo) g = (g + 0.299 * lo[0] + 0.587 * lo[1] + 0.114 * lo[2]) / 2;
                char ch[2] = {ramp[lround(g / 255.0 * 9)], '\0'};
                cell_put(c, cx, cy, ch, -1, -1, false);
            } else {
                int16_t fg = gl_color_xterm256(up[0], up[1], up[2]);
                int16_t bg = lo ? gl_color_xterm256(lo[0], lo[1], lo[2]) : -1;
                cell_put(c, cx, cy, "▀", fg, bg, false);
            }
        }
    free(rgb);
    return GL_OK;
}
