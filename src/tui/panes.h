/* The workbench screen: where the panes go and how each draws itself with
 * curses. It knows nothing of Lua: the workbench (app*.c) hands it text,
 * series and pixels, marks what changed, and calls gl_screen_draw, which
 * repaints only the dirty panes (wnoutrefresh each, then one doupdate). */
#ifndef GL_TUI_PANES_H
#define GL_TUI_PANES_H

#include <curses.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/chart.h"

typedef enum {
    GL_PANE_NOTEBOOK, /* the notebook's cells (when a notebook is open) */
    GL_PANE_TRANSCRIPT, /* what the REPL printed */
    GL_PANE_LOSS,
    GL_PANE_SAMPLES,
    GL_PANE_MODEL,
    GL_PANE_IMAGE,
    GL_PANE_PROBE, /* gl.probe's variants side by side */
    GL_PANE_COUNT
} gl_pane_id;

/* How a line of text is shown. */
typedef enum { GL_TEXT_OUT, GL_TEXT_INPUT, GL_TEXT_ERROR, GL_TEXT_INFO, GL_TEXT_HEAD, GL_TEXT_CODE } gl_text_kind;

typedef struct {
    char *text;
    gl_text_kind kind;
    int tag; /* a notebook line's cell (1-based), else 0 */
} gl_line;

/* Lines of text, the oldest dropped past max; `open` is an unfinished last
 * line (output without its newline yet). */
typedef struct {
    gl_line *lines;
    int n, cap, max;
    bool open;
} gl_text;

void gl_text_clear(gl_text *t);
void gl_text_add(gl_text *t, const char *s, size_t len, gl_text_kind kind, int tag);
/* Appends output bytes: '\n' ends a line, '\r' starts it over, terminal
 * escapes are dropped, tabs become spaces. */
void gl_text_feed(gl_text *t, const char *s, size_t len, gl_text_kind kind);

typedef struct {
    WINDOW *win;
    bool visible, dirty;
    int weight; /* share of its column, +/- changes it */
    int scroll; /* lines back from the end (text) */
} gl_pane;

typedef struct {
    char *name;
    double *x, *y;
    int64_t n;
} gl_curve;

typedef struct {
    gl_pane panes[GL_PANE_COUNT];
    WINDOW *status, *input, *overlay;
    int focus; /* a gl_pane_id, or -1: the input line */
    int rows, cols;
    bool compact, utf8, colors;
    int side_pct; /* width of the side column, percent of the screen */
    bool status_dirty, input_dirty;

    gl_text transcript, samples, model, notebook;
    gl_text probe; /* lines that keep their SGR escapes (colour, bold, dim) */
    int notebook_cell; /* selected cell, 1-based; 0: none */

    /* Loss pane */
    gl_curve *curves;
    int n_curves;
    char *metric; /* the metric shown, e.g. "loss" */
    bool log_y;
    int64_t last_n;

    /* Image pane: f32 pixels in [0,1], [h, w, channels] */
    float *pixels;
    int64_t img_h, img_w;
    int img_c;
    char *img_title;

    char status_text[512];
    /* input line: prompt, buffer (UTF-8), cursor byte offset */
    char *prompt, *line;
    int point;
    char *help; /* overlay text, or NULL */
} gl_screen;

/* Initializes curses on the given terminal streams and the screen state. */
bool gl_screen_open(gl_screen *s, FILE *out, FILE *in);
void gl_screen_close(gl_screen *s);
/* Recomputes window sizes (after a resize or a pane shown/hidden/resized). */
void gl_screen_layout(gl_screen *s);
/* Repaints what is dirty; with force, everything. */
void gl_screen_draw(gl_screen *s, bool force);
/* Repaints the input line only (a keystroke between frames). */
void gl_screen_draw_input(gl_screen *s);
void gl_screen_dirty(gl_screen *s, gl_pane_id id);
/* Replaces the curves of the Loss pane (takes ownership of the arrays). */
void gl_screen_set_curves(gl_screen *s, gl_curve *curves, int n);
/* Replaces the picture (takes ownership of pixels). */
void gl_screen_set_image(gl_screen *s, float *pixels, int64_t h, int64_t w, int c, const char *title);
/* Visible panes that can take focus, in cycling order after `from` (-1 = the input). */
int gl_screen_next_focus(const gl_screen *s, int from);
/* Columns a pane's text gets (its width less the rule of a side pane); 0 when not placed. */
int gl_screen_text_cols(const gl_screen *s, gl_pane_id id);
/* Scrolls the notebook so that the selected cell's lines are in view. */
void gl_screen_show_cell(gl_screen *s);

#endif
