/* Matrix products: torch.matmul and nn.Linear's op, forward and backward.
 * Letters: M rows of A and C, K the contracted dim, N columns of B and C;
 * R rows of a linear's flattened input. Every GEMM goes through gl_sgemm,
 * whose transpose flags stand in for transposed copies:
 *   C = A @ B   =>   dA += dC @ B^T,   dB += A^T @ dC
 * summed over the batches in which an operand was broadcast. */
#include "ops/matmul.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "core/threads.h"

/* gl_sgemm without degenerate calls (BLAS rejects a leading dim of 0). */
static void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (M == 0 || N == 0) return;
    gl_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

/* The shapes of a @ b after torch.matmul's promotion: a 1-D a is [1,K], a
 * 1-D b is [K,1]; batch dims (all but the last two) broadcast. */
typedef struct {
    int64_t M, K, N;
    int nbd;                          /* batch dims of the output */
    int64_t bshape[GL_MAX_DIMS];      /* output batch shape */
    int64_t sa[GL_MAX_DIMS];          /* a's batch stride (in matrices) per batch dim, 0 if broadcast */
    int64_t sb[GL_MAX_DIMS];
    int64_t nb, nba, nbb;             /* matrices in the output, in a, in b */
    int ndim;                         /* the output's shape */
    int64_t shape[GL_MAX_DIMS];
} mm_plan;

static gl_status mm_plan_make(const gl_tensor *a, const gl_tensor *b, mm_plan *p)
{
    char s1[128], s2[128];
    if (a->ndim == 0 || b->ndim == 0)
        return gl_error(GL_EINVAL, "matmul: both arguments need at least 1 dim, got shapes %s and %s",
                        gl_tensor_shape_str(a, s1, sizeof s1), gl_tensor_shape_str(b, s2, sizeof s2));
    bool a1 = a->ndim == 1, b1 = b->ndim == 1;
    p->M = a1 ? 1 : a->shape[a->ndim - 2];
    p->K = a->shape[a->ndim - 1];
    p->N = b1 ? 1 : b->shape[b->ndim - 1];
    int64_t kb = b1 ? b->shape[0] : b->shape[b->ndim - 2];
    if (p->K != kb)
        return gl_error(GL_EINVAL, "matmul: shapes %s and %s do not align (%lld != %lld)",
                        gl_tensor_shape_str(a, s1, sizeof s1), gl_tensor_shape_str(b, s2, sizeof s2),
                        (long long)p->K, (long long)kb);
    int bda = a1 ? 0 : a->ndim - 2, bdb = b1 ? 0 : b->ndim - 2;
    p->nbd = bda > bdb ? bda : bdb;
    int64_t sa = 1, sb = 1;
    for (int k = p->nbd - 1; k >= 0; k--) {
        int ka = k - (p->nbd - bda), kbd = k - (p->nbd - bdb);
        int64_t da = ka >= 0 ? a->shape[ka] : 1, db = kbd >= 0 ? b->shape[kbd] : 1;
        if (da != db && da != 1 && db != 1)
            return gl_error(GL_EINVAL, "matmul: batch dims of shapes %s and %s cannot broadcast (%lld vs %lld)",
                            gl_tensor_shape_str(a, s1, sizeof s1), gl_tensor_shape_str(b, s2, sizeof s2),
                            (long long)da, (long long)db);
        p->bshape[k] = (da == 0 || db == 0) ? 0 : (da > db ? da : db);
        p->sa[k] = da == 1 ? 0 : sa;
        p->sb[k] = db == 1 ? 0 : sb;
        sa *= da;
        sb *= db;
    }
    p->nba = sa;
    p->nbb = sb;
    p->nb = gl_shape_numel(p->nbd, p->bshape);
    p->ndim = 0;
    for (int k = 0; k < p->nbd; k++) p->shape[p->ndim++] = p->bshape[k];
    if (!a1) p->shape[p->ndim++] = p->M;
    if (!b1) p->shape[p->ndim++] = p->N;
    return GL_OK;
}

/* The matrices of a and b that output matrix ob is made from. */
static void mm_batch_of(const mm_plan *p, int64_t ob, int64_t *ia, int64_t *ib)
{
    int64_t x = 0, y = 0;
    for (int k = p->nbd - 1; k >= 0; k--) {
        int64_t i = ob % p->bshape[k];
        ob /= p->bshape[k];
        x += i * p->sa[k];
        y += i * p->sb[k];
    }
    *ia = x;
    *ib = y;
}

/* One batched product: which operand it writes and the pointers it reads. */
typedef enum { MM_OUT, MM_DA, MM_DB } mm_target;

typedef struct {
    const mm_plan *p;
    mm_target target;
    const float *a, *b, *g; /* a [nba,M,K], b [nbb,K,N], g = dC [nb,M,N] */
    float *dst;             /* C, dA or dB */
} mm_job;

static void mm_run_one(const mm_job *j, int64_t ob)
{
    const mm_plan *p = j->p;
    int64_t M = p->M, K = p->K, N = p->N, ia, ib;
    mm_batch_of(p, ob, &ia, &ib);
    const float *A = j->a + ia * M * K, *B = j->b + ib * K * N;
    switch (j->target) {
    case MM_OUT: gemm(false, false, M, N, K, A, K, B, N, 0.0f, j->dst + ob * M * N, N); break;
    case MM_DA: gemm(false, true, M, K, N, j->g + ob * M * N, N, B, N, 1.0f, j->dst + ia * M * K, K); break;
    case MM_DB: gemm(true, false, K, N, M, A, K, j->g + ob * M * N, N, 1.0f, j->dst + ib * K * N, N); break;
    }
}

/* Runs the product for every output matrix. Each written matrix is owned by
 * one thread: when the target was broadcast, the products that add into the
 * same matrix run in order on one thread (deterministic sums). Many small
 * products run in parallel, each GEMM single-threaded (OpenBLAS's OpenMP
 * build does that inside a parallel region); few large ones use BLAS threads. */
static gl_status mm_run(const mm_job *j)
{
    const mm_plan *p = j->p;
    int64_t nt = j->target == MM_DA ? p->nba : j->target == MM_DB ? p->nbb : p->nb;
    if (p->nb == 0) return GL_OK;
    bool par = nt > 1 && (nt >= gl_threads_get() || p->M * p->N * p->K <= (1 << 21));
    if (nt == p->nb) { /* target not broadcast: one product per matrix */
        mm_run_one(j, 0); /* first one outside the region, so gl_sgemm syncs BLAS threads serially */
#pragma omp parallel for if (par) schedule(dynamic, 1)
        for (int64_t ob = 1; ob < p->nb; ob++) mm_run_one(j, ob);
        return GL_OK;
    }
    /* Group output matrices by the target matrix they add into (counting sort). */
    int64_t *start = calloc((size_t)(nt + 1 + 2 * p->nb), sizeof *start);
    if (!start) return gl_error(GL_ENOMEM, "matmul backward: out of memory");
    int64_t *tgt = start + nt + 1, *sorted = tgt + p->nb;
    for (int64_t ob = 0; ob < p->nb; ob++) {
        int64_t ia, ib;
        mm_batch_of(p, ob, &ia, &ib);
        tgt[ob] = j->target == MM_DA ? ia : ib;
        start[tgt[ob] + 1]++;
    }
    for (int64_t t = 0; t < nt; t++) start[t + 1] += start[t];
    for (int64_t ob = 0; ob < p->nb; ob++) sorted[start[tgt[ob]]++] = ob; /* now start[t] ends group t */
    for (int64_t k = 0; k < start[0]; k++) mm_run_one(j, sorted[k]);
#pragma omp parallel for if (par) schedule(dynamic, 1)
    for (int64_t t = 1; t < nt; t++)
        for (int64_t k = start[t - 1]; k < start[t]; k++) mm_run_one(j, sorted[k]);
    free(start);
    return GL_OK;
}

static gl_status matmul_backward(gl_node *nd)
{
    if (gl_interrupt_poll("matmul backward")) return GL_EINTR;
    gl_tensor *a = nd->saved[0], *b = nd->saved[1];
    mm_plan p;
    gl_status st = mm_plan_make(a, b, &p);
    float *da, *db;
    if (st != GL_OK || (st = gl_node_grad(nd, 0, &da)) != GL_OK || (st = gl_node_grad(nd, 1, &db)) != GL_OK)
        return st;
    const float *A = gl_tensor_f32(a), *B = gl_tensor_f32(b), *G = gl_tensor_f32(nd->gout);
    if (p.nbb == 1) {
        /* b shared by every batch ([..., M, K] @ [K, N]): a's batches are one
         * tall matrix [nb*M, K], so each gradient is a single GEMM. */
        int64_t R = p.nb * p.M;
        if (da) gemm(false, true, R, p.K, p.N, G, p.N, B, p.N, 1.0f, da, p.K);
        if (db) gemm(true, false, p.K, p.N, R, A, p.K, G, p.N, 1.0f, db, p.N);
        return GL_OK;
    }
    mm_job j = {&p, MM_DA, A, B, G, da};
    if (da && (st = mm_run(&j)) != GL_OK) return st;
    j.target = MM_DB;
    j.dst = db;
    if (db) st = mm_run(&j);
    return st;
}

gl_tensor *gl_matmul(gl_tensor *a, gl_tensor *b)
{
    if (gl_interrupt_poll("matmul")) return NULL;
    if (a->dtype != GL_F32 || b->dtype != GL_F32)
        return gl_error_null(GL_EINVAL, "matmul: expected f32 tensors, got %s and %s (convert with :float())",
                             gl_dtype_name(a->dtype), gl_dtype_name(b->dtype));
    mm_plan p;
    if (mm_plan_make(a, b, &p) != GL_OK) return NULL;
    gl_tensor *out = gl_tensor_empty(GL_F32, p.ndim, p.shape);
    if (!out) return NULL;
    const float *A = gl_tensor_f32(a), *B = gl_tensor_f32(b);
    float *C = gl_tensor_f32(out);
    if (p.nbb == 1) { /* [..., M, K] @ [K, N] is one GEMM over the rows of every batch */
        gemm(false, false, p.nb * p.M, p.N, p.K, A, p.K, B, p.N, 0.0f, C, p.N);
    } else {
        mm_job j = {&p, MM_OUT, A, B, NULL, C};
        if (mm_run(&j) != GL_OK) goto fail;
    }
    gl_tensor *ins[2] = {a, b};
    gl_node *nd;
    if (gl_autograd_record(&nd, out, "matmul", matmul_backward, 2, ins) != GL_OK) goto fail;
    if (nd && (gl_node_save(nd, 0, a) != GL_OK || gl_node_save(nd, 1, b) != GL_OK)) goto fail;
    return out;
fail:
    gl_tensor_release(out);
    return NULL;
}

/* db[C] += the column sums of g[R, C]. Each thread owns a range of columns
 * and adds the rows in order, so every sum has the same order whatever the
 * thread count. */
static void colsum_add(float *db, const float *g, int64_t R, int64_t C)
{
#pragma omp parallel if (R * C > 65536)
    {
        int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t per = ((C + nt - 1) / nt + 15) / 16 * 16, j0 = t * per, j1 = j0 + per < C ? j0 + per : C;
        for (int64_t r = 0; r < R && j0 < j1; r++) {
            const float *gr = g + r * C;
#pragma omp simd
            for (int64_t j = j0; j < j1; j++) db[j] += gr[j];
        }
    }
}

/* Saved: x [R, in], w [out, in]. */
static gl_status linear_backward(gl_node *nd)
{
    if (gl_interrupt_poll("linear backward")) return GL_EINTR;
    gl_tensor *x = nd->saved[0], *w = nd->saved[1];
    int64_t out = w->shape[0], in = w->shape[1], R = nd->i[0];
    float *dx, *dw, *db;
    bool fx, fw, fb; /* fresh buffers: the GEMM writes (beta 0) rather than adds */
    gl_status st;
    if ((st = gl_node_grad_init(nd, 0, &dx, &fx)) != GL_OK || (st = gl_node_grad_init(nd, 1, &dw, &fw)) != GL_OK ||
        (st = gl_node_grad_init(nd, 2, &db, &fb)) != GL_OK)
        return st;
    const float *G = gl_tensor_f32(nd->gout);
    if (dx) gemm(false, false, R, in, out, G, out, gl_tensor_f32(w), in, fx ? 0.0f : 1.0f, dx, in);
    if (dw) gemm(true, false, out, in, R, G, out, gl_tensor_f32(x), in, fw ? 0.0f : 1.0f, dw, in);
    if (db && fb) memset(db, 0, (size_t)out * sizeof *db);
    if (db) colsum_add(db, G, R, out);
    return GL_OK;
}

gl_tensor *gl_linear(gl_tensor *x, gl_tensor *w, gl_tensor *b)
{
    char s1[128], s2[128];
    if (gl_interrupt_poll("linear")) return NULL;
    if (x->dtype != GL_F32 || w->dtype != GL_F32 || (b && b->dtype != GL_F32))
        return gl_error_null(GL_EINVAL, "linear: expected f32 tensors, got x %s, weight %s%s%s",
                             gl_dtype_name(x->dtype), gl_dtype_name(w->dtype), b ? ", bias " : "",
                             b ? gl_dtype_name(b->dtype) : "");
    if (w->ndim != 2)
        return gl_error_null(GL_EINVAL, "linear: weight must be 2-D [out, in], got shape %s",
                             gl_tensor_shape_str(w, s1, sizeof s1));
    int64_t out = w->shape[0], in = w->shape[1];
    if (x->ndim == 0 || x->shape[x->ndim - 1] != in)
        return gl_error_null(GL_EINVAL, "linear: x of shape %s does not match weight %s (last dim must be %lld)",
                             gl_tensor_shape_str(x, s1, sizeof s1), gl_tensor_shape_str(w, s2, sizeof s2),
                             (long long)in);
    if (b && (b->ndim != 1 || b->shape[0] != out))
        return gl_error_null(GL_EINVAL, "linear: bias of shape %s does not match weight %s (expected [%lld])",
                             gl_tensor_shape_str(b, s1, sizeof s1), gl_tensor_shape_str(w, s2, sizeof s2),
                             (long long)out);
    int64_t shape[GL_MAX_DIMS], R = 1;
    for (int k = 0; k < x->ndim - 1; k++) R *= (shape[k] = x->shape[k]);
    shape[x->ndim - 1] = out;
    gl_tensor *y = gl_tensor_empty(GL_F32, x->ndim, shape);
    if (!y) return NULL;
    float *Y = gl_tensor_f32(y);
    if (b) { /* start from the bias in every row, then let the GEMM add into it */
        const float *B = gl_tensor_f32(b);
#pragma omp parallel for if (R * out > 65536) schedule(static)
        for (int64_t r = 0; r < R; r++) memcpy(Y + r * out, B, (size_t)out * sizeof *Y);
    }
    gemm(false, true, R, out, in, gl_tensor_f32(x), in, gl_tensor_f32(w), in, b ? 1.0f : 0.0f, Y, out);
    gl_tensor *ins[3] = {x, w, b};
    gl_node *nd;
    if (gl_autograd_record(&nd, y, "linear", linear_backward, 3, ins) != GL_OK) goto fail;
    if (nd) {
        nd->i[0] = R;
        if (gl_node_save(nd, 0, x) != GL_OK || gl_node_save(nd, 1, w) != GL_OK) goto fail;
    }
    return y;
fail:
    gl_tensor_release(y);
    return NULL;
}
