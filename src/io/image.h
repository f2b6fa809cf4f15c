/* Images: PNG in and out (libpng), resizing, cropping, grids, and listing
 * the PNG files of a folder.
 *
 * An image is an f32 tensor [C,H,W] (channels first, as in PyTorch) with
 * values in [0,1]. C is 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA).
 * Values are taken as stored (no gamma correction), as PIL and torchvision do. */
#ifndef GL_IO_IMAGE_H
#define GL_IO_IMAGE_H

#include <stdint.h>

#include "core/tensor.h"

/* Every PNG colour type and bit depth: palettes are expanded (to RGBA when
 * they have transparency), 1/2/4-bit grey is scaled up, 16-bit samples
 * divide by 65535. Errors: "image.load: <path>: <why>". */
gl_tensor *gl_image_read_png(const char *path);

/* Writes x, f32 [C,H,W] with C = 1..4 (or [H,W], grey), as an 8-bit
 * PNG, atomically: (v - lo) / (hi - lo) clamped to [0,1], times 255,
 * rounded (torchvision's save_image). Errors: "image.save: <path>: <why>". */
gl_status gl_image_write_png(const char *path, const gl_tensor *x, float lo, float hi);

/* x [C,H,W] with C = 1..4 as [channels,H,W], channels 1, 3 or 4: grey is
 * repeated into RGB, RGB becomes grey by ITU-R 601 luma (as PIL's "L"),
 * alpha is composited over a uniform background (0 black .. 1 white) when
 * dropped, and is 1 when added. */
gl_tensor *gl_image_convert(const gl_tensor *x, int channels, float background);

/* The last two dims of f32 x (any leading dims) resized to h x w, each axis
 * on its own: bilinear with pixel centres at +0.5 (PyTorch's
 * align_corners=false, edges clamped) when it grows, an exact box filter
 * (each output pixel the area-weighted mean of the input it covers, as
 * OpenCV's INTER_AREA) when it shrinks, a copy when it keeps its size. */
gl_tensor *gl_image_resize(const gl_tensor *x, int64_t h, int64_t w);

/* The centred h x w window of the last two dims of x (any dtype); the
 * top/left offset is (H - h) / 2 rounded down. */
gl_tensor *gl_image_center_crop(const gl_tensor *x, int64_t h, int64_t w);

/* Images x f32 [B,C,H,W] laid out in a grid of nrow images a row, padding
 * pixels between and around them filled with pad_value (torchvision's
 * make_grid): [C, rows*(H+padding)+padding, nrow'*(W+padding)+padding]
 * with nrow' = min(nrow, B) and rows = ceil(B / nrow'). */
gl_tensor *gl_image_grid(const gl_tensor *x, int64_t nrow, int64_t padding, float pad_value);

/* The PNG files under dir (names ending in .png, any case), searched
 * recursively, symbolic links followed, each file once however many names
 * reach it, as paths "dir/sub/name.png" sorted bytewise. *paths (and each
 * string) is malloc'd; free with gl_image_free_list. */
gl_status gl_image_list_png(const char *dir, char ***paths, int64_t *n);
void gl_image_free_list(char **paths, int64_t n);

#endif
