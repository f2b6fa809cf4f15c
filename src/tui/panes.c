/* The workbench screen (see panes.h).
 *
 * Layout: the input line at the bottom, the status line above it; above
 * them a main column (notebook over transcript) and, when any is shown, a
 * side column of panes (Loss, Samples, Model, Image, Probe) stacked by weight.
 * Below 100x28 (down to 60x20) the layout is compact: the side panes share
 * a band under the main column instead. Each pane has a title row (reversed
 * when focused); side panes have a rule on their left. */
#include "tui/panes.h"

#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#define INPUT_MAX_ROWS 5
#define TEXT_MAX_LINES 5000

static const char *const titles[GL_PANE_COUNT] = {"Notebook", "Transcript", "Loss",
                                                  "Samples",  "Model",      "Image", "Probe"};
static const char *const keys[GL_PANE_COUNT] = {"F6", "F7", "F2", "F3", "F4", "F5", "F8"};

/* ---- text ------------------------------------------------------------------------- */

void gl_text_clear(gl_text *t)
{
    for (int i = 0; i < t->n; i++) free(t->lines[i].text);
    t->n = 0;
    t->open = false;
}

static gl_line *text_push(gl_text *t)
{
    int max = t->max > 0 ? t->max : TEXT_MAX_LINES;
    if (t->n >= max) { /* drop the oldest tenth at once, not one line a time */
        int drop = max / 10 + 1;
        for (int i = 0; i < drop; i++) free(t->lines[i].text);
        memmove(t->lines, t->lines + drop, (size_t)(t->n - drop) * sizeof *t->lines);
        t->n -= drop;
    }
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        gl_line *l = realloc(t->lines, (size_t)cap * sizeof *l);
        if (!l) return NULL;
        t->lines = l;
        t->cap = cap;
    }
    gl_line *l = &t->lines[t->n++];
    memset(l, 0, sizeof *l);
    return l;
}

void gl_text_add(gl_text *t, const char *s, size_t len, gl_text_kind kind, int tag)
{
    t->open = false;
    gl_line *l = text_push(t);
    if (!l) return;
    l->text = strndup(s, len);
    if (!l->text) {
        t->n--;
        return;
    }
    l->kind = kind;
    l->tag = tag;
}

static void open_append(gl_text *t, const char *s, size_t len, gl_text_kind kind)
{
    if (!t->open || t->n == 0) {
        gl_text_add(t, "", 0, kind, 0);
        t->open = t->n > 0;
        if (!t->open) return;
    }
    gl_line *l = &t->lines[t->n - 1];
    size_t old = strlen(l->text);
    char *p = realloc(l->text, old + len + 1);
    if (!p) return;
    memcpy(p + old, s, len);
    p[old + len] = '\0';
    l->text = p;
}

void gl_text_feed(gl_text *t, const char *s, size_t len, gl_text_kind kind)
{
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != '\n' && s[j] != '\r' && s[j] != '\t' && s[j] != '\033') j++;
        if (j > i) open_append(t, s + i, j - i, kind);
        if (j == len) break;
        char c = s[j++];
        if (c == '\n') {
            if (!t->open) gl_text_add(t, "", 0, kind, 0);
            t->open = false;
        } else if (c == '\r') {
            if (t->open && t->n > 0) t->lines[t->n - 1].text[0] = '\0';
        } else if (c == '\t') {
            size_t col = t->open && t->n > 0 ? strlen(t->lines[t->n - 1].text) : 0;
            open_append(t, "        ", 8 - col % 8, kind);
        } else { /* ESC [ params final: a colour or an erase; dropped */
            if (j < len && s[j] == '[') {
                j++;
                while (j < len && !(s[j] >= '@' && s[j] <= '~')) j++;
                if (j < len) j++;
            }
        }
        i = j;
    }
}

/* ---- drawing helpers ------------------------------------------------------------------ */

static attr_t kind_attr(const gl_screen *s, gl_text_kind k)
{
    static const short fg[] = {-1, 75, 203, 244, 221, 252};
    attr_t mono[] = {A_NORMAL, A_BOLD, A_BOLD, A_DIM, A_BOLD | A_UNDERLINE, A_NORMAL};
    if (!s->colors || k == GL_TEXT_OUT) return mono[k];
    int pair = alloc_pair(fg[k], -1);
    return (pair > 0 ? COLOR_PAIR(pair) : 0) | (k == GL_TEXT_HEAD ? A_BOLD : 0);
}

/* Byte length of the longest prefix of str (len bytes) that fits in cols
 * columns; *used gets the columns it takes. */
static size_t fit(const char *str, size_t len, int cols, int *used)
{
    mbstate_t st;
    memset(&st, 0, sizeof st);
    size_t i = 0;
    int w = 0;
    while (i < len) {
        wchar_t wc;
        size_t n = mbrtowc(&wc, str + i, len - i, &st);
        if (n == (size_t)-1 || n == (size_t)-2) { /* a stray byte: one column */
            memset(&st, 0, sizeof st);
            n = 1;
            wc = '?';
        } else if (n == 0) {
            break;
        }
        int cw = wcwidth(wc);
        if (cw < 0) cw = 1;
        if (w + cw > cols) break;
        w += cw;
        i += n;
    }
    if (used) *used = w;
    return i;
}

/* Rows a line takes when wrapped at cols (at least 1). */
static int wrapped_rows(const char *str, int cols)
{
    size_t len = strlen(str), at = 0;
    int rows = 0;
    do {
        size_t n = fit(str + at, len - at, cols, NULL);
        if (n == 0 && at < len) n = 1;
        at += n;
        rows++;
    } while (at < len);
    return rows;
}

/* Draws the line's wrapped rows from row `skip` on at window row y, at most
 * `room` rows; returns rows drawn. */
static int draw_wrapped(WINDOW *w, int y, int x, int cols, const char *str, int skip, int room)
{
    size_t len = strlen(str), at = 0;
    int row = 0, drawn = 0;
    do {
        size_t n = fit(str + at, len - at, cols, NULL);
        if (n == 0 && at < len) n = 1;
        if (row >= skip && drawn < room) {
            mvwaddnstr(w, y + drawn, x, str + at, (int)n);
            drawn++;
        }
        at += n;
        row++;
    } while (at < len && drawn < room);
    return drawn;
}

/* ---- panes --------------------------------------------------------------------------- */

static int content_x(const gl_screen *s, gl_pane_id id)
{
    return id >= GL_PANE_LOSS && !s->compact ? 1 : 0; /* the rule left of side panes */
}

static void draw_title(gl_screen *s, gl_pane_id id, const char *extra)
{
    WINDOW *w = s->panes[id].win;
    int cols = getmaxx(w);
    bool focused = s->focus == (int)id;
    wattr_set(w, focused ? A_REVERSE | A_BOLD : A_REVERSE, 0, NULL);
    mvwhline(w, 0, 0, ' ', cols);
    char buf[256];
    snprintf(buf, sizeof buf, " %s%s%s [%s]", titles[id], extra && *extra ? ": " : "", extra ? extra : "", keys[id]);
    mvwaddnstr(w, 0, 0, buf, (int)fit(buf, strlen(buf), cols, NULL));
    wattr_set(w, A_NORMAL, 0, NULL);
    if (content_x(s, id))
        for (int y = 1; y < getmaxy(w); y++) mvwaddstr(w, y, 0, s->utf8 ? "\u2502" : "|");
}

/* Text from the bottom up, `scroll` wrapped rows back from the end. */
static void draw_text_bottom(gl_screen *s, gl_pane_id id, gl_text *t)
{
    WINDOW *w = s->panes[id].win;
    int x = content_x(s, id), cols = getmaxx(w) - x, rows = getmaxy(w) - 1;
    if (cols <= 0 || rows <= 0) return;
    int skip = s->panes[id].scroll; /* rows below the view */
    int y = rows; /* next row to fill, from the bottom, exclusive */
    for (int i = t->n - 1; i >= 0 && y > 0; i--) {
        int r = wrapped_rows(t->lines[i].text, cols);
        if (skip >= r) {
            skip -= r;
            continue;
        }
        int visible = r - skip, top = y - visible, first = 0;
        skip = 0;
        if (top < 0) {
            first = -top;
            top = 0;
        }
        wattr_set(w, kind_attr(s, t->lines[i].kind), 0, NULL);
        draw_wrapped(w, 1 + top, x, cols, t->lines[i].text, first, y - top);
        y = top;
    }
    wattr_set(w, A_NORMAL, 0, NULL);
}

/* Text from the top, `scroll` lines down, not wrapped (notebook, model). */
static void draw_text_top(gl_screen *s, gl_pane_id id, gl_text *t, int mark_tag)
{
    WINDOW *w = s->panes[id].win;
    int x = content_x(s, id), cols = getmaxx(w) - x, rows = getmaxy(w) - 1;
    for (int r = 0; r < rows; r++) {
        int i = s->panes[id].scroll + r;
        if (i >= t->n) break;
        const gl_line *l = &t->lines[i];
        bool marked = mark_tag && l->tag == mark_tag;
        attr_t a = kind_attr(s, l->kind);
        wattr_set(w, a, 0, NULL);
        if (marked && id == GL_PANE_NOTEBOOK) { /* the selected cell: a bar in the gutter */
            wattr_set(w, s->focus == GL_PANE_NOTEBOOK ? A_REVERSE | A_BOLD : A_BOLD, 0, NULL);
            mvwaddstr(w, 1 + r, x, s->utf8 ? "\u258c" : ">");
            wattr_set(w, a, 0, NULL);
        }
        int gutter = id == GL_PANE_NOTEBOOK ? 1 : 0;
        const char *str = l->text;
        mvwaddnstr(w, 1 + r, x + gutter, str, (int)fit(str, strlen(str), cols - gutter, NULL));
    }
    wattr_set(w, A_NORMAL, 0, NULL);
}

static void paint_canvas(gl_screen *s, WINDOW *w, int y0, int x0, const gl_canvas *c)
{
    for (int y = 0; y < c->height; y++) {
        for (int x = 0; x < c->width; x++) {
            const gl_cell *cell = &c->cells[(size_t)y * (size_t)c->width + (size_t)x];
            int pair = 0;
            if (s->colors && (cell->fg >= 0 || cell->bg >= 0)) {
                pair = alloc_pair(cell->fg, cell->bg);
                if (pair < 0) pair = 0;
            }
            wattr_set(w, cell->bold ? A_BOLD : A_NORMAL, 0, &pair);
            mvwaddstr(w, y0 + y, x0 + x, cell->text[0] ? cell->text : " ");
        }
    }
    wattr_set(w, A_NORMAL, 0, NULL);
}

static void draw_message(WINDOW *w, int x, const char *msg)
{
    int cols = getmaxx(w) - x;
    if (cols > 0 && getmaxy(w) > 1) mvwaddnstr(w, 1, x, msg, (int)fit(msg, strlen(msg), cols, NULL));
}

static void draw_loss(gl_screen *s)
{
    WINDOW *w = s->panes[GL_PANE_LOSS].win;
    char extra[96];
    snprintf(extra, sizeof extra, "%s%s%s", s->metric ? s->metric : "loss", s->log_y ? " log" : "",
             s->last_n ? " zoom" : "");
    if (s->last_n) snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " %lld", (long long)s->last_n);
    draw_title(s, GL_PANE_LOSS, extra);
    int x = content_x(s, GL_PANE_LOSS), cols = getmaxx(w) - x, rows = getmaxy(w) - 1;
    if (s->n_curves == 0) {
        draw_message(w, x, "no training yet (l log, z zoom, m metric)");
        return;
    }
    if (cols < 12 || rows < 3) return;
    static const int16_t palette[] = {39, 208, 76, 170, 226, 203, 45, 141};
    gl_series *series = calloc((size_t)s->n_curves, sizeof *series);
    gl_canvas c;
    if (!series || gl_canvas_init(&c, cols, rows) != GL_OK) {
        free(series);
        return;
    }
    for (int i = 0; i < s->n_curves; i++)
        series[i] = (gl_series){.name = s->curves[i].name, .x = s->curves[i].x, .y = s->curves[i].y,
                                .n = s->curves[i].n, .color = s->colors ? palette[i % 8] : -1};
    gl_chart_opts o = {.title = NULL, .glyphs = s->utf8 ? GL_GLYPHS_BRAILLE : GL_GLYPHS_ASCII, .log_y = s->log_y,
                       .last_n = s->last_n, .legend = true};
    if (gl_chart_draw(&c, series, s->n_curves, &o) == GL_OK)
        paint_canvas(s, w, 1, x, &c);
    else
        draw_message(w, x, gl_error_message());
    gl_canvas_free(&c);
    free(series);
}

static void draw_image(gl_screen *s)
{
    WINDOW *w = s->panes[GL_PANE_IMAGE].win;
    draw_title(s, GL_PANE_IMAGE, s->img_title);
    int x = content_x(s, GL_PANE_IMAGE), cols = getmaxx(w) - x, rows = getmaxy(w) - 1;
    if (!s->pixels) {
        draw_message(w, x, "show(t) puts a tensor image or grid here");
        return;
    }
    gl_canvas c;
    if (cols < 1 || rows < 1 || gl_canvas_init(&c, cols, rows) != GL_OK) return;
    gl_glyphs g = s->utf8 && s->colors ? GL_GLYPHS_BLOCKS : GL_GLYPHS_ASCII;
    if (gl_image_draw(&c, s->pixels, true, s->img_h, s->img_w, s->img_c, g) == GL_OK)
        paint_canvas(s, w, 1, x, &c);
    else
        draw_message(w, x, gl_error_message());
    gl_canvas_free(&c);
}

/* The style after the SGR parameters from p to end: 0 resets, 1 bold, 2 dim,
 * 22 neither, 30-37 a colour (*fg, as a 256-colour shade like the other
 * panes' colours), 39 the default colour. */
static attr_t sgr_attr(const char *p, const char *end, attr_t a, short *fg)
{
    static const short ansi[8] = {-1, 203, 76, 221, 75, 170, 45, 252};
    while (p < end) {
        int v = 0;
        while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
        if (p < end) p++; /* ';' */
        if (v == 0) a = A_NORMAL, *fg = -1;
        else if (v == 1) a |= A_BOLD;
        else if (v == 2) a |= A_DIM;
        else if (v == 22) a &= ~(attr_t)(A_BOLD | A_DIM);
        else if (v >= 30 && v <= 37) *fg = ansi[v - 30];
        else if (v == 39) *fg = -1;
    }
    return a;
}

/* One line with SGR escapes at window row y, cut at cols columns. */
static void draw_sgr_line(gl_screen *s, WINDOW *w, int y, int x, int cols, const char *str)
{
    attr_t a = A_NORMAL;
    short fg = -1;
    int used = 0;
    const char *p = str;
    while (*p && used < cols) {
        if (p[0] == '\033') { /* ESC [ params final: an SGR ('m') sets the style, others are dropped */
            const char *q = p + 1;
            if (*q == '[') {
                while (*++q && !(*q >= '@' && *q <= '~')) {}
                if (*q == 'm') a = sgr_attr(p + 2, q, a, &fg);
                if (*q) q++;
            }
            p = q;
            continue;
        }
        size_t len = strcspn(p, "\033");
        int pair = 0, width;
        if (s->colors && fg >= 0) {
            pair = alloc_pair(fg, -1);
            if (pair < 0) pair = 0;
        }
        wattr_set(w, a, 0, &pair);
        size_t n = fit(p, len, cols - used, &width);
        mvwaddnstr(w, y, x + used, p, (int)n);
        used += width;
        if (n < len) break;
        p += len;
    }
    wattr_set(w, A_NORMAL, 0, NULL);
}

static void draw_probe(gl_screen *s)
{
    WINDOW *w = s->panes[GL_PANE_PROBE].win;
    draw_title(s, GL_PANE_PROBE, NULL);
    int x = content_x(s, GL_PANE_PROBE), cols = getmaxx(w) - x, rows = getmaxy(w) - 1;
    if (s->probe.n == 0) {
        draw_message(w, x, "probe{...} compares prompt variants here");
        return;
    }
    for (int r = 0; r < rows && cols > 0; r++) {
        int i = s->panes[GL_PANE_PROBE].scroll + r;
        if (i >= s->probe.n) break;
        draw_sgr_line(s, w, 1 + r, x, cols, s->probe.lines[i].text);
    }
}

static void draw_pane(gl_screen *s, gl_pane_id id)
{
    gl_pane *p = &s->panes[id];
    werase(p->win);
    switch (id) {
    case GL_PANE_NOTEBOOK:
        draw_title(s, id, NULL);
        draw_text_top(s, id, &s->notebook, s->notebook_cell);
        break;
    case GL_PANE_TRANSCRIPT:
        draw_title(s, id, p->scroll ? "scrolled (PgDn)" : NULL);
        draw_text_bottom(s, id, &s->transcript);
        break;
    case GL_PANE_SAMPLES:
        draw_title(s, id, NULL);
        draw_text_bottom(s, id, &s->samples);
        break;
    case GL_PANE_MODEL:
        draw_title(s, id, NULL);
        draw_text_top(s, id, &s->model, 0);
        break;
    case GL_PANE_LOSS: draw_loss(s); break;
    case GL_PANE_IMAGE: draw_image(s); break;
    case GL_PANE_PROBE: draw_probe(s); break;
    default: break;
    }
    wnoutrefresh(p->win);
    p->dirty = false;
}

/* ---- status, input, help --------------------------------------------------------------- */

static void draw_status(gl_screen *s)
{
    WINDOW *w = s->status;
    werase(w);
    wbkgdset(w, ' ' | A_REVERSE);
    wattr_set(w, A_REVERSE, 0, NULL);
    mvwhline(w, 0, 0, ' ', s->cols);
    const char *t = s->status_text;
    mvwaddnstr(w, 0, 0, t, (int)fit(t, strlen(t), s->cols, NULL));
    wattr_set(w, A_NORMAL, 0, NULL);
    wnoutrefresh(w);
    s->status_dirty = false;
}

static int input_rows(const gl_screen *s)
{
    int n = 1;
    for (const char *p = s->line ? s->line : ""; *p; p++) n += *p == '\n';
    return n < INPUT_MAX_ROWS ? n : INPUT_MAX_ROWS;
}

/* The prompt and the line; a line longer than the window scrolls so that
 * the cursor stays in view. A multi-line buffer shows its last rows. */
static void draw_input(gl_screen *s)
{
    WINDOW *w = s->input;
    werase(w);
    int rows = getmaxy(w), cols = s->cols;
    const char *line = s->line ? s->line : "", *prompt = s->prompt ? s->prompt : "";
    /* split into rows at '\n'; find the cursor's row */
    int nrows = 1, cur_row = 0;
    for (const char *p = line; *p; p++) nrows += *p == '\n';
    for (int i = 0; i < s->point && line[i]; i++) cur_row += line[i] == '\n';
    int first = cur_row - rows + 1 > 0 ? cur_row - rows + 1 : 0;
    if (nrows - first < rows && nrows > rows) first = nrows - rows;
    int cy = 0, cx = 0, row = 0;
    const char *p = line;
    int plen = (int)strlen(prompt), pw = 0;
    fit(prompt, (size_t)plen, cols, &pw);
    while (1) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (row >= first && row - first < rows) {
            int y = row - first, x0 = pw;
            wattr_set(w, A_BOLD, 0, NULL);
            mvwaddstr(w, y, 0, row == 0 ? prompt : "... ");
            wattr_set(w, A_NORMAL, 0, NULL);
            if (row != 0) fit("... ", 4, cols, &x0);
            int avail = cols - x0 - 1;
            size_t off = 0;
            bool has_cursor = row == cur_row;
            size_t at = has_cursor ? (size_t)(s->point - (p - line)) : 0;
            if (has_cursor) { /* scroll so the cursor fits */
                int cw;
                while (fit(p + off, at - off, 1 << 30, &cw), cw > avail && off < at) off++;
                while (off > 0 && (p[off] & 0xC0) == 0x80) off--;
            }
            if (avail > 0) mvwaddnstr(w, y, x0, p + off, (int)fit(p + off, len - off, avail, NULL));
            if (has_cursor) {
                int cw;
                fit(p + off, at - off, 1 << 30, &cw);
                cy = y;
                cx = x0 + cw;
            }
        }
        if (!end) break;
        p = end + 1;
        row++;
    }
    wmove(w, cy, cx < cols ? cx : cols - 1);
    s->input_dirty = false;
}

/* A border drawn with plain characters (the terminal's line-drawing charset
 * is not reliable under every multiplexer). */
static void frame_window(const gl_screen *s, WINDOW *win, int h, int w)
{
    const char *hz = s->utf8 ? "\u2500" : "-", *vt = s->utf8 ? "\u2502" : "|";
    const char *corners[4] = {"+", "+", "+", "+"};
    if (s->utf8) corners[0] = "\u250c", corners[1] = "\u2510", corners[2] = "\u2514", corners[3] = "\u2518";
    for (int x = 1; x < w - 1; x++) {
        mvwaddstr(win, 0, x, hz);
        mvwaddstr(win, h - 1, x, hz);
    }
    for (int y = 1; y < h - 1; y++) {
        mvwaddstr(win, y, 0, vt);
        mvwaddstr(win, y, w - 1, vt);
    }
    mvwaddstr(win, 0, 0, corners[0]);
    mvwaddstr(win, 0, w - 1, corners[1]);
    mvwaddstr(win, h - 1, 0, corners[2]);
    mvwaddstr(win, h - 1, w - 1, corners[3]); /* the window is not the screen's last cell: no scroll */
}

static void draw_help(gl_screen *s)
{
    if (!s->help) return;
    int lines = 1, width = 0, cur = 0;
    for (const char *p = s->help; *p; p++) {
        if (*p == '\n') {
            lines++;
            width = cur > width ? cur : width;
            cur = 0;
        } else if ((*p & 0xC0) != 0x80) {
            cur++;
        }
    }
    width = cur > width ? cur : width;
    int h = lines + 2 < s->rows ? lines + 2 : s->rows, w = width + 4 < s->cols ? width + 4 : s->cols;
    if (s->overlay) delwin(s->overlay);
    s->overlay = newwin(h, w, (s->rows - h) / 2, (s->cols - w) / 2);
    if (!s->overlay) return;
    werase(s->overlay);
    frame_window(s, s->overlay, h, w);
    int y = 1;
    for (const char *p = s->help; *p && y < h - 1; y++) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        mvwaddnstr(s->overlay, y, 2, p, (int)fit(p, len, w - 4, NULL));
        if (!end) break;
        p = end + 1;
    }
    wnoutrefresh(s->overlay);
}

/* ---- layout ---------------------------------------------------------------------------- */

static void place(gl_screen *s, gl_pane_id id, int h, int w, int y, int x)
{
    gl_pane *p = &s->panes[id];
    if (p->win) delwin(p->win);
    p->win = h > 0 && w > 0 ? newwin(h, w, y, x) : NULL;
    p->dirty = true;
}

/* Splits `total` among the visible panes of ids[] by weight; each gets at least min. */
static void split(gl_screen *s, const gl_pane_id *ids, int n, int total, int min, int *sizes)
{
    int sum = 0, count = 0;
    for (int i = 0; i < n; i++)
        if (s->panes[ids[i]].visible) {
            sum += s->panes[ids[i]].weight;
            count++;
        }
    int left = total, done = 0;
    for (int i = 0; i < n; i++) {
        sizes[i] = 0;
        if (!s->panes[ids[i]].visible) continue;
        done++;
        int size = done == count ? left : total * s->panes[ids[i]].weight / (sum ? sum : 1);
        if (size < min) size = min;
        if (size > left - min * (count - done)) size = left - min * (count - done);
        sizes[i] = size > 0 ? size : 0;
        left -= sizes[i];
    }
}

void gl_screen_layout(gl_screen *s)
{
    getmaxyx(stdscr, s->rows, s->cols);
    s->compact = s->cols < 100 || s->rows < 28;
    int in_rows = input_rows(s), area = s->rows - in_rows - 1;
    if (area < 2) area = 2;
    if (s->input) delwin(s->input);
    if (s->status) delwin(s->status);
    s->status = newwin(1, s->cols, area, 0);
    s->input = newwin(in_rows, s->cols, area + 1, 0);
    keypad(s->input, TRUE); /* keys are read from the input window */
    nodelay(s->input, TRUE);
    if (!s->panes[GL_PANE_NOTEBOOK].visible && !s->panes[GL_PANE_TRANSCRIPT].visible)
        s->panes[GL_PANE_TRANSCRIPT].visible = true;

    static const gl_pane_id main_ids[] = {GL_PANE_NOTEBOOK, GL_PANE_TRANSCRIPT};
    static const gl_pane_id side_ids[] = {GL_PANE_LOSS, GL_PANE_SAMPLES, GL_PANE_MODEL, GL_PANE_IMAGE, GL_PANE_PROBE};
    enum { NSIDE = sizeof side_ids / sizeof *side_ids };
    bool any_side = false;
    for (int i = 0; i < NSIDE; i++) any_side = any_side || s->panes[side_ids[i]].visible;
    int main_w = s->cols, main_h = area, side_w = 0, side_h = 0;
    if (any_side && s->compact) {
        side_h = area * s->side_pct / 100;
        if (side_h < 5) side_h = area / 2;
        main_h = area - side_h;
    } else if (any_side) {
        side_w = s->cols * s->side_pct / 100;
        main_w = s->cols - side_w;
    }
    int sizes[NSIDE];
    split(s, main_ids, 2, main_h, 2, sizes);
    for (int i = 0, y = 0; i < 2; i++) {
        place(s, main_ids[i], sizes[i], main_w, y, 0);
        y += sizes[i];
    }
    if (s->compact) {
        split(s, side_ids, NSIDE, s->cols, 8, sizes);
        for (int i = 0, x = 0; i < NSIDE; i++) {
            place(s, side_ids[i], sizes[i] ? side_h : 0, sizes[i], main_h, x);
            x += sizes[i];
        }
    } else {
        split(s, side_ids, NSIDE, area, 3, sizes);
        for (int i = 0, y = 0; i < NSIDE; i++) {
            place(s, side_ids[i], sizes[i], side_w, y, main_w);
            y += sizes[i];
        }
    }
    for (int i = 0; i < GL_PANE_COUNT; i++)
        if (!s->panes[i].win) s->panes[i].visible = s->panes[i].visible && i < GL_PANE_LOSS;
    if (s->focus >= 0 && !s->panes[s->focus].win) s->focus = -1;
    erase();
    wnoutrefresh(stdscr);
    s->status_dirty = s->input_dirty = true;
}

/* ---- the screen ---------------------------------------------------------------------------- */

bool gl_screen_open(gl_screen *s, FILE *out, FILE *in)
{
    if (!newterm(NULL, out, in)) return false;
    s->utf8 = MB_CUR_MAX > 1;
    s->colors = has_colors() && start_color() == OK && COLORS >= 256;
    if (s->colors) use_default_colors();
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    set_escdelay(25);
    s->focus = -1;
    s->side_pct = 42;
    for (int i = 0; i < GL_PANE_COUNT; i++) s->panes[i].weight = 10;
    s->panes[GL_PANE_TRANSCRIPT].visible = true;
    s->panes[GL_PANE_LOSS].visible = true;
    s->notebook.max = 100000;
    gl_screen_layout(s);
    return true;
}

static void free_curves(gl_screen *s)
{
    for (int i = 0; i < s->n_curves; i++) {
        free(s->curves[i].name);
        free(s->curves[i].x);
        free(s->curves[i].y);
    }
    free(s->curves);
    s->curves = NULL;
    s->n_curves = 0;
}

void gl_screen_close(gl_screen *s)
{
    for (int i = 0; i < GL_PANE_COUNT; i++)
        if (s->panes[i].win) delwin(s->panes[i].win);
    if (s->status) delwin(s->status);
    if (s->input) delwin(s->input);
    if (s->overlay) delwin(s->overlay);
    endwin();
    gl_text *texts[] = {&s->transcript, &s->samples, &s->model, &s->notebook, &s->probe};
    for (int i = 0; i < 5; i++) {
        gl_text_clear(texts[i]);
        free(texts[i]->lines);
    }
    free_curves(s);
    free(s->metric);
    free(s->pixels);
    free(s->img_title);
    free(s->prompt);
    free(s->line);
}

void gl_screen_dirty(gl_screen *s, gl_pane_id id)
{
    s->panes[id].dirty = true;
}

void gl_screen_set_curves(gl_screen *s, gl_curve *curves, int n)
{
    free_curves(s);
    s->curves = curves;
    s->n_curves = n;
    s->panes[GL_PANE_LOSS].dirty = true;
}

void gl_screen_set_image(gl_screen *s, float *pixels, int64_t h, int64_t w, int c, const char *title)
{
    free(s->pixels);
    free(s->img_title);
    s->pixels = pixels;
    s->img_h = h;
    s->img_w = w;
    s->img_c = c;
    s->img_title = title ? strdup(title) : NULL;
    s->panes[GL_PANE_IMAGE].dirty = true;
}

int gl_screen_next_focus(const gl_screen *s, int from)
{
    static const int order[] = {-1, GL_PANE_NOTEBOOK, GL_PANE_TRANSCRIPT, GL_PANE_LOSS, GL_PANE_SAMPLES,
                                GL_PANE_MODEL, GL_PANE_IMAGE, GL_PANE_PROBE};
    int n = (int)(sizeof order / sizeof *order), at = 0;
    for (int i = 0; i < n; i++)
        if (order[i] == from) at = i;
    for (int k = 1; k <= n; k++) {
        int id = order[(at + k) % n];
        if (id < 0 || (s->panes[id].visible && s->panes[id].win)) return id;
    }
    return -1;
}

int gl_screen_text_cols(const gl_screen *s, gl_pane_id id)
{
    WINDOW *w = s->panes[id].win;
    return w ? getmaxx(w) - content_x(s, id) : 0;
}

void gl_screen_show_cell(gl_screen *s)
{
    gl_pane *p = &s->panes[GL_PANE_NOTEBOOK];
    int rows = p->win ? getmaxy(p->win) - 1 : 1, first = -1, last = -1;
    for (int i = 0; i < s->notebook.n; i++)
        if (s->notebook.lines[i].tag == s->notebook_cell) {
            if (first < 0) first = i;
            last = i;
        }
    if (first < 0) return;
    if (last - p->scroll >= rows) p->scroll = last - rows + 1;
    if (first < p->scroll || last - first >= rows) p->scroll = first;
    if (p->scroll < 0) p->scroll = 0;
    p->dirty = true;
}

void gl_screen_draw_input(gl_screen *s)
{
    if (input_rows(s) != getmaxy(s->input)) {
        gl_screen_draw(s, true);
        return;
    }
    draw_input(s);
    wnoutrefresh(s->input);
    doupdate();
}

void gl_screen_draw(gl_screen *s, bool force)
{
    if (input_rows(s) != getmaxy(s->input)) {
        gl_screen_layout(s);
        force = true;
    }
    bool any = false;
    for (int i = 0; i < GL_PANE_COUNT; i++) {
        gl_pane *p = &s->panes[i];
        if (!p->visible || !p->win || !(p->dirty || force)) continue;
        draw_pane(s, (gl_pane_id)i);
        any = true;
    }
    if (s->status_dirty || force) {
        draw_status(s);
        any = true;
    }
    if (s->input_dirty || force || any) draw_input(s);
    if (s->help) draw_help(s);
    curs_set(s->focus < 0 && !s->help ? 1 : 0);
    wnoutrefresh(s->input); /* last, so the cursor rests on the input line */
    doupdate();
}
