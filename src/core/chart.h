/* Text charts and pictures for terminals and logs: line charts of one or
 * more series (with axes, legend, log scale, last-N zoom) and images as
 * colour half-blocks, drawn into a grid of cells that the TUI paints with
 * curses and that gl.plot prints as plain text. No terminal I/O here.
 *
 * Glyph sets, best first: Unicode braille (2x4 dots per cell), Unicode
 * blocks, ASCII. Colours are xterm-256 indices (-1 = default). */
#ifndef GL_CORE_CHART_H
#define GL_CORE_CHART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef enum { GL_GLYPHS_BRAILLE = 0, GL_GLYPHS_BLOCKS, GL_GLYPHS_ASCII } gl_glyphs;

typedef struct {
    char text[8]; /* one UTF-8 character, NUL-terminated */
    int16_t fg, bg; /* xterm-256 colour or -1 */
    bool bold;
} gl_cell;

typedef struct {
    int width, height;
    gl_cell *cells; /* row-major, width * height */
} gl_canvas;

gl_status gl_canvas_init(gl_canvas *c, int width, int height);
void gl_canvas_free(gl_canvas *c);
/* The canvas as text: rows joined by '\n'; with colours as ANSI escapes when ansi. malloc'd. */
char *gl_canvas_to_string(const gl_canvas *c, bool ansi);

typedef struct {
    const char *name;  /* legend label */
    const double *x;   /* may be NULL: x = 0, 1, 2, ... */
    const double *y;   /* NaN entries are gaps */
    int64_t n;
    int16_t color;
} gl_series;

typedef struct {
    const char *title;
    gl_glyphs glyphs;
    bool log_y;        /* log10 y axis (non-positive values skipped) */
    int64_t last_n;    /* show only the last N x positions; 0 = all */
    bool legend;
} gl_chart_opts;

/* Draws the series into the whole canvas (axes with tick values included). */
gl_status gl_chart_draw(gl_canvas *c, const gl_series *series, int n_series, const gl_chart_opts *opts);

/* An image as half-block cells ("▀": fg = upper pixel, bg = lower pixel).
 * pixels: u8 or f32 in [0,1], layout [H, W] (grey) or [H, W, 3] (RGB);
 * scaled to fit the canvas keeping the aspect ratio. With ASCII glyphs, a
 * grey ramp of characters is used instead of colours. */
gl_status gl_image_draw(gl_canvas *c, const void *pixels, bool is_f32, int64_t h, int64_t w, int channels,
                        gl_glyphs glyphs);
/* The cells (cols x rows) an h x w image takes when scaled to fit max_cols x
 * max_rows cells keeping its aspect (a cell is one pixel wide, two tall). */
void gl_image_fit(int64_t h, int64_t w, int max_cols, int max_rows, int *cols, int *rows);

/* The nearest xterm-256 colour (6x6x6 cube or grey ramp) to an RGB colour. */
int16_t gl_color_xterm256(uint8_t r, uint8_t g, uint8_t b);
/* A number in at most ~6 characters for axis labels: 4.17, 0.25, 1.2e-3,
 * 12k, 3.4M; prec significant digits (3 is the default look). Returns buf. */
char *gl_chart_format_number(double v, int prec, char *buf, size_t n);

#endif
