/* Text form of a tensor, like PyTorch's: nested brackets, aligned columns,
 * summarized with "..." when large, then shape and dtype. */
#ifndef GL_CORE_PRINT_H
#define GL_CORE_PRINT_H

#include "core/tensor.h"

/* Returns a malloc'd string (caller frees), or NULL when out of memory. */
char *gl_tensor_format(const gl_tensor *t);

#endif
