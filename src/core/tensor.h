/* Tensors: a dtype, a shape of up to GL_MAX_DIMS dims and a contiguous
 * row-major window into reference-counted storage. Views (reshape, slices
 * of the leading dimension) share storage; everything else copies.
 *
 * Ownership: gl_tensor_* constructors return a tensor holding one reference.
 * gl_tensor_release drops it. Autograd attaches a node (grad_fn) to tensors
 * produced by recorded ops; core only knows how to destroy it. */
#ifndef GL_CORE_TENSOR_H
#define GL_CORE_TENSOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"
#include "core/storage.h"

#define GL_MAX_DIMS 6

typedef struct gl_node gl_node;

/* Every autograd node starts with this header so core can destroy it. */
typedef struct gl_node_header {
    void (*destroy)(gl_node *node);
} gl_node_header;

typedef struct gl_tensor {
    atomic_int refs; /* atomic: data-parallel replicas share the parameters (gpt_parallel.c) */
    gl_dtype dtype;
    int ndim;
    int64_t shape[GL_MAX_DIMS];
    int64_t numel;
    gl_storage *storage;
    size_t offset; /* bytes from storage->data to element 0 */
    bool requires_grad;
    struct gl_tensor *grad; /* accumulated gradient of a leaf, f32, same shape */
    gl_node *grad_fn;       /* the op that produced this tensor, if recorded */
    bool graph_freed;       /* grad_fn was released by a backward pass */
} gl_tensor;

/* Element count of a shape, or -1 when it is negative or overflows. */
int64_t gl_shape_numel(int ndim, const int64_t *shape);
/* "[2,3,4]" into buf; returns buf. */
char *gl_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
bool gl_shape_equal(int ndim_a, const int64_t *a, int ndim_b, const int64_t *b);

/* A zero-filled tensor. NULL with an error set on bad shape or no memory. */
gl_tensor *gl_tensor_new(gl_dtype dt, int ndim, const int64_t *shape);
gl_tensor *gl_tensor_new_like(const gl_tensor *t);
/* Like gl_tensor_new but with undefined contents: only for outputs that the
 * caller overwrites completely (skips a memset that costs as much as the op). */
gl_tensor *gl_tensor_empty(gl_dtype dt, int ndim, const int64_t *shape);
gl_tensor *gl_tensor_scalar(float v);
/* A tensor over existing storage (retained) starting at offset bytes. */
gl_tensor *gl_tensor_from_storage(gl_storage *s, size_t offset, gl_dtype dt, int ndim,
                                  const int64_t *shape);
/* Same storage, new shape with the same element count. No autograd. */
gl_tensor *gl_tensor_alias(const gl_tensor *t, int ndim, const int64_t *shape);
/* A deep copy of the data; no autograd. */
gl_tensor *gl_tensor_clone_data(const gl_tensor *t);

void gl_tensor_retain(gl_tensor *t);
void gl_tensor_release(gl_tensor *t);

/* NULL for an empty tensor, whose storage holds no block (an offset added
 * to a null pointer is undefined). */
static inline void *gl_tensor_data(const gl_tensor *t)
{
    return t->storage->data ? (char *)t->storage->data + t->offset : NULL;
}
static inline float *gl_tensor_f32(const gl_tensor *t) { return (float *)gl_tensor_data(t); }
static inline size_t gl_tensor_nbytes(const gl_tensor *t)
{
    return (size_t)t->numel * gl_dtype_size(t->dtype);
}
/* Element i as a double, whatever the dtype. */
double gl_tensor_get(const gl_tensor *t, int64_t i);
void gl_tensor_set(gl_tensor *t, int64_t i, double v);
/* "[2,3]" of this tensor into buf. */
char *gl_tensor_shape_str(const gl_tensor *t, char *buf, size_t n);
/* Dim d normalized to 0..ndim-1 (negative d counts from the end); -1 when out of range. */
int gl_tensor_dim_index(const gl_tensor *t, int d);

#endif
