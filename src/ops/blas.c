/* The one place that calls cblas_sgemm. It also keeps OpenBLAS's thread
 * count equal to genlab's OpenMP count: both run on the same OpenMP pool. */
#include <cblas.h>
#include <omp.h>

#include "core/interrupt.h"
#include "core/threads.h"
#include "ops/blas.h"
#include "ops/matmul.h"

/* Products above this many multiply-adds (~2-4 ms on one core) run in
 * blocks of rows with a tick of the poll hook between blocks, so that the
 * workbench echoes keys in the middle of a training step's big GEMMs. */
#define TICK_MACS (1LL << 27)

int64_t gl_sgemm_block_rows(int64_t M, int64_t N, int64_t K)
{
    if (M * N * K <= TICK_MACS) return M;
    int64_t rows = TICK_MACS / (N * K);
    return rows < 256 ? 256 : rows; /* narrower blocks would lose GEMM efficiency */
}

void gl_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    static int blas_threads;
    int want = gl_threads_get();
    /* Inside a parallel region each caller runs its own single-threaded GEMM;
     * only the outermost caller may change the pool size. */
    if (want != blas_threads && !omp_in_parallel()) {
        openblas_set_num_threads(want);
        blas_threads = want;
    }
    if (M == 0 || N == 0) return;
    if (K == 0) { /* C = beta * C; BLAS may skip the product and leave C untouched */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    int64_t rows = omp_in_parallel() ? M : gl_sgemm_block_rows(M, N, K);
    for (int64_t i = 0; i < M; i += rows) {
        int64_t m = M - i < rows ? M - i : rows;
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                    (blasint)m, (blasint)N, (blasint)K, alpha, trans_a ? A + i : A + i * lda, (blasint)lda, B,
                    (blasint)ldb, beta, C + i * ldc, (blasint)ldc);
        if (m < M) gl_interrupt_tick();
    }
}

const char *gl_blas_config(void) { return openblas_get_config(); }
