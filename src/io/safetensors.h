/* Hugging Face safetensors files (https://huggingface.co/docs/safetensors):
 *
 *   8 bytes   N, the header length, unsigned little-endian
 *   N bytes   JSON object {"__metadata__": {"key": "value", ...},
 *                          "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 *             padded with spaces so that the data starts 8-byte aligned
 *   rest      the data buffer; offsets are relative to its start
 *
 * Loading validates the whole header against the file with overflow-checked
 * sizes before it copies anything; a bad file gives one GL_EFORMAT error,
 * "load: PATH: what is wrong (hint)". dtypes F32, I32, I64 and U8 load as
 * themselves, BOOL as U8, and F16, BF16 and F64 are converted to F32; any
 * other dtype is rejected by name. Host byte order must be little-endian. */
#ifndef GL_IO_SAFETENSORS_H
#define GL_IO_SAFETENSORS_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

/* What a file holds, in file order. Everything is owned by the struct and
 * released by gl_safetensors_free; a caller that takes a tensor sets its
 * entry to NULL. */
typedef struct gl_safetensors {
    int64_t n;
    char **names;
    gl_tensor **tensors; /* one reference each, fresh owned storage */
    int64_t n_meta;
    char **meta_keys;
    char **meta_values;
} gl_safetensors;

/* Writes n tensors (data only, no autograd) in the given order, with n_meta
 * string pairs of metadata ("__metadata__" is left out when n_meta is 0), to
 * path atomically (io/atomic.h). To keep every tensor aligned in the data
 * buffer, as the Hugging Face writer does, give 8-byte dtypes first, then
 * 4-byte ones, then 1-byte ones. Names must be unique and not "__metadata__";
 * metadata keys must be unique. Nothing is borrowed after the call. */
gl_status gl_safetensors_save(const char *path, int64_t n, const char *const *names,
                              gl_tensor *const *tensors, int64_t n_meta,
                              const char *const *meta_keys, const char *const *meta_values);

/* Reads path into *out (zeroed first; left zeroed on error). */
gl_status gl_safetensors_load(const char *path, gl_safetensors *out);

/* Releases what *st still owns and zeroes it; a zeroed struct is a no-op. */
void gl_safetensors_free(gl_safetensors *st);

#endif
