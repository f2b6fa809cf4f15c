#ifndef GL_CORE_DTYPE_H
#define GL_CORE_DTYPE_H

#include <stddef.h>

typedef enum {
    GL_F32 = 0, /* default: values, parameters, gradients */
    GL_I32,     /* token ids from tokenizers */
    GL_I64,     /* indices (gather, embedding, targets) */
    GL_U8,      /* images */
    GL_DTYPE_COUNT
} gl_dtype;

size_t gl_dtype_size(gl_dtype dt);
const char *gl_dtype_name(gl_dtype dt);
/* Accepts "f32"/"float32"/"float", "i32"/"int32", "i64"/"int64"/"long", "u8"/"uint8".
 * Returns -1 when the name is unknown. */
int gl_dtype_from_name(const char *name);
int gl_dtype_is_int(gl_dtype dt);

#endif
