/* IDX files, the format of MNIST and Fashion-MNIST (LeCun's "magic number,
 * dimension sizes, data" layout), plain or gzip-compressed.
 *
 *   bytes 0-1  zero                 byte 2  element type (0x08 = unsigned byte)
 *   byte 3     number of dims D     then D big-endian u32 sizes, then the data
 *
 * Only unsigned-byte files are read (every MNIST-format data set uses them);
 * every header field is checked, sizes are overflow-checked, and the data
 * must fill the rest of the file exactly. The data is inflated straight into
 * the tensor, so the 47 MB of Fashion-MNIST's training images are copied once. */
#ifndef GL_IO_IDX_H
#define GL_IO_IDX_H

#include "core/tensor.h"

/* A u8 tensor with the file's shape (images [N,28,28], labels [N]). NULL
 * with an error "idx: <path>: <why>" on a missing, truncated or malformed file. */
gl_tensor *gl_idx_read(const char *path);

#endif
