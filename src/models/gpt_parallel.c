/* Data-parallel training and evaluation steps of a GPT: the rows of a batch
 * are split into shares, one per thread, and each thread runs the whole
 * model, forward and backward, single-threaded on its share (the GEMMs and
 * kernels inside see an active parallel region and do not split again).
 *
 * Why: at small sizes splitting every op between two threads wastes a good
 * part of the second core. nanoGPT's CPU configuration (B 12, T 64, C 128)
 * makes GEMMs of a few MFLOP, and the threads wait on each other at every
 * op, hundreds of times a step. Whole shares meet once, at the end.
 *
 * The shares share the parameters, not their gradients: the first share
 * adds into the parameters' grad as a serial step would, every other one
 * into a gradient sink of its own (src/autograd/tape.h), merged afterwards.
 * With dropout, each share draws its masks from a stream of its own, seeded
 * from the process-wide generator, so a seed still gives one run. */
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "core/rng.h"
#include "core/threads.h"
#include "models/gpt.h"
#include "ops/shape.h"

typedef struct {
    gl_tensor *ids, *targets; /* views of the share's rows (narrow on dim 0 shares storage) */
    int64_t row0;             /* its first row in the batch */
    int64_t counted;          /* targets that are not -1 */
    gl_rng_state rng;
    gl_grad_sink *sink;       /* NULL for the first share */
    double loss;
    gl_status status;
    char error[256];
} share;

static int64_t count_targets(const gl_tensor *t)
{
    int64_t n = 0;
    for (int64_t i = 0; i < t->numel; i++) n += gl_tensor_get(t, i) != -1.0;
    return n;
}

/* One share's forward (and backward, its loss weighted by weight), on the calling thread. */
static void run_share(gl_module *m, share *s, bool backward, float weight, bool own_rng)
{
    gl_grad_sink *was_sink = gl_grad_sink_use(s->sink);
    gl_rng_state *was_rng = own_rng ? gl_rng_use(&s->rng) : NULL;
    bool was_recording = gl_grad_set_enabled(backward);
    bool was_allowed = gl_interrupt_allow_hook(true); /* the workbench echoes keys from the first share */
    gl_tensor *loss = NULL, *seed = NULL;
    gl_tensor *logits = gl_gpt_forward(m, s->ids, s->targets, &loss);
    s->status = GL_OK;
    if (!logits) {
        s->status = gl_error_code();
    } else {
        s->loss = gl_tensor_f32(loss)[0];
        if (backward && (!(seed = gl_tensor_scalar(weight)) || gl_backward(loss, seed, false) != GL_OK))
            s->status = gl_error_code();
    }
    if (s->status != GL_OK) snprintf(s->error, sizeof s->error, "%s", gl_error_message());
    gl_tensor_release(seed);
    gl_tensor_release(loss);
    gl_tensor_release(logits);
    gl_interrupt_allow_hook(was_allowed);
    gl_grad_set_enabled(was_recording);
    if (own_rng) gl_rng_use(was_rng);
    gl_grad_sink_use(was_sink);
}

/* The master thread, done with its shares, keeps the workbench's poll hook
 * ticking until the other threads are done with theirs: at the region's
 * closing barrier it would not, and keys typed meanwhile would echo only
 * after the step (tests/tui.sh saw a line typed then run between steps). */
static void wait_for_shares(atomic_int *done, int n)
{
    bool was = gl_interrupt_allow_hook(true);
    const struct timespec nap = {0, 100000}; /* 0.1 ms: gives a contended core back to the other shares */
    while (atomic_load(done) < n) {
        gl_interrupt_tick();
        nanosleep(&nap, NULL);
    }
    gl_interrupt_allow_hook(was);
}

/* Batches up to this many activations per layer (B T C floats) split into
 * shares. Bigger ones run whole: their ops are big enough to split well
 * between threads, and shares would cost a gradient sink per extra thread
 * (the parameters' size each) and raise the peak RSS. Measured on 2
 * threads: nanoGPT's CPU configuration (98,304) steps 19-26% faster in
 * shares; the baby GPT (6.3 M) 6% faster, but its peak RSS went from 1430
 * to 1527 MiB, at the edge of its goal of a quarter of PyTorch's. */
#define SHARE_MAX_ACTIVATIONS (1 << 20)

/* The shares a batch splits into: one per thread, at most one per row; one
 * when already inside a parallel region, for a big batch, or when the batch
 * as a whole is wrong (the whole-batch step then reports it). */
static int share_count(const gl_gpt_config *c, const gl_tensor *ids)
{
    if (ids->ndim != 2 || omp_in_parallel() || (ids->dtype != GL_I64 && ids->dtype != GL_I32) ||
        ids->shape[1] > c->block_size || ids->numel > SHARE_MAX_ACTIVATIONS / c->n_embd)
        return 1;
    int64_t n = gl_threads_get();
    n = n < ids->shape[0] ? n : ids->shape[0];
    return n > 1 ? (int)n : 1;
}

static gl_status loss_in_shares(gl_module *m, gl_tensor *ids, gl_tensor *targets, float scale, bool backward,
                                double *loss)
{
    const gl_gpt_config *c = gl_gpt_config_of(m);
    if (!c) return gl_error(GL_EINVAL, "gpt: forward_backward: not a GPT module");
    char s1[128], s2[128];
    if (!gl_shape_equal(targets->ndim, targets->shape, ids->ndim, ids->shape))
        return gl_error(GL_EINVAL, "gpt: targets %s do not match ids %s", gl_tensor_shape_str(targets, s1, sizeof s1),
                        gl_tensor_shape_str(ids, s2, sizeof s2));
    int n = share_count(c, ids);
    if (n > 1 && count_targets(targets) == 0) n = 1; /* no mean to weight by: the serial step's answer */
    share *sh = calloc((size_t)n, sizeof *sh);
    gl_grad_sink **sinks = calloc((size_t)n, sizeof *sinks); /* of shares 1.. */
    gl_tensor_list params = GL_TENSOR_LIST_INIT;
    gl_tensor **leaves = NULL;
    gl_status st = sh && sinks ? GL_OK : gl_error(GL_ENOMEM, "gpt: forward_backward: out of memory");
    if (st == GL_OK && n == 1) {
        sh[0].ids = ids;
        sh[0].targets = targets;
        gl_tensor_retain(ids);
        gl_tensor_retain(targets);
    }
    int64_t B = ids->ndim == 2 ? ids->shape[0] : 1, total = 0;
    for (int r = 0; r < n && n > 1 && st == GL_OK; r++) {
        int64_t r0 = B * r / n, r1 = B * (r + 1) / n;
        sh[r].row0 = r0;
        if (!(sh[r].ids = gl_narrow(ids, 0, r0, r1 - r0)) || !(sh[r].targets = gl_narrow(targets, 0, r0, r1 - r0))) {
            st = gl_error_code();
            break;
        }
        total += sh[r].counted = count_targets(sh[r].targets);
    }
    if (st == GL_OK && n > 1 && backward && (st = gl_module_named_parameters(m, &params)) == GL_OK) {
        if (!(leaves = malloc((size_t)params.n * sizeof *leaves + 1))) st = gl_error(GL_ENOMEM, "gpt: out of memory");
        for (int64_t k = 0; leaves && k < params.n; k++) leaves[k] = params.items[k].t;
        for (int r = 1; r < n && st == GL_OK; r++)
            if (!(sinks[r - 1] = sh[r].sink = gl_grad_sink_new((int)params.n, leaves))) st = gl_error_code();
    }
    bool own_rng = st == GL_OK && n > 1 && m->training && c->dropout > 0.0f;
    for (int r = 0; r < n && own_rng; r++) gl_rng_state_seed(&sh[r].rng, gl_rng_u64()); /* serially: reproducible */

    if (st == GL_OK && n == 1) {
        run_share(m, &sh[0], backward, scale, false);
    } else if (st == GL_OK) {
        atomic_int done = 0;
#pragma omp parallel num_threads(n)
        {
            int nt = omp_get_num_threads();
            for (int r = omp_get_thread_num(); r < n; r += nt) {
                /* a share with nothing to count still runs forward: its ids are checked */
                run_share(m, &sh[r], backward && sh[r].counted, scale * (float)sh[r].counted / (float)total, own_rng);
                atomic_fetch_add(&done, 1);
            }
            if (omp_get_thread_num() == 0) wait_for_shares(&done, n);
        }
    }
    double sum = 0.0;
    for (int r = 0; r < n && st == GL_OK; r++) {
        if (sh[r].status != GL_OK && n == 1) st = sh[r].status; /* its message, whole, is this thread's */
        if (sh[r].status != GL_OK && n > 1) /* positions in the error count from the share's first row */
            st = gl_error(sh[r].status, "rows %lld-%lld of the batch: %s", (long long)sh[r].row0,
                          (long long)(sh[r].row0 + sh[r].ids->shape[0] - 1), sh[r].error);
        if (n == 1 || sh[r].counted) sum += n == 1 ? sh[r].loss : sh[r].loss * (double)sh[r].counted / (double)total;
    }
    if (st == GL_OK && backward && n > 1) gl_grad_sink_merge(n - 1, sinks);
    if (st == GL_OK) *loss = sum;
    for (int r = 0; sh && r < n; r++) {
        gl_grad_sink_free(sh[r].sink); /* after a failure, with the share's partial gradients */
        gl_tensor_release(sh[r].ids);
        gl_tensor_release(sh[r].targets);
    }
    free(leaves);
    gl_tensor_list_clear(&params);
    free(sinks);
    free(sh);
    return st;
}

gl_status gl_gpt_forward_backward(gl_module *m, gl_tensor *ids, gl_tensor *targets, float scale, double *loss)
{
    return loss_in_shares(m, ids, targets, scale, true, loss);
}

gl_status gl_gpt_loss(gl_module *m, gl_tensor *ids, gl_tensor *targets, double *loss)
{
    return loss_in_shares(m, ids, targets, 0.0f, false, loss);
}
