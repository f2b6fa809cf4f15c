/* Matrix products. Every GEMM in genlab goes through gl_sgemm (ops/blas.c),
 * the one place that calls cblas_sgemm. */
#ifndef GL_OPS_MATMUL_H
#define GL_OPS_MATMUL_H

#include <stdbool.h>

#include "core/tensor.h"

/* C[M,N] = alpha * op(A) @ op(B) + beta * C, row-major; op transposes when trans_*. */
void gl_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* The rows of each block gl_sgemm runs an [M,K] x [K,N] product in, outside
 * a parallel region (M when it runs whole): a caller that recomputes some
 * rows of a product gets the same bits by computing whole blocks. */
int64_t gl_sgemm_block_rows(int64_t M, int64_t N, int64_t K);

/* torch.matmul semantics: 1-D x 1-D dot, 2-D @ 2-D, batched with broadcast batch dims. */
gl_tensor *gl_matmul(gl_tensor *a, gl_tensor *b);
/* x[..., in] @ w[out, in]^T + b[out] (b may be NULL): nn.Linear's op. */
gl_tensor *gl_linear(gl_tensor *x, gl_tensor *w, gl_tensor *b);

#endif
