/* Core and autograd from C: shapes, storage sharing, errors as values,
 * RNG reproducibility, backward through a small graph. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "core/error.h"
#include "core/print.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "ops/binary.h"
#include "ops/create.h"
#include "tap.h"

static void test_shapes(void)
{
    int64_t shape[3] = {2, 3, 4};
    gl_tensor *t = gl_tensor_new(GL_F32, 3, shape);
    ok(t && t->numel == 24, "new tensor has 24 elements");
    int64_t flat[1] = {24};
    gl_tensor *v = gl_tensor_alias(t, 1, flat);
    ok(v && v->storage == t->storage && t->storage->refs == 2, "alias shares storage");
    gl_tensor_release(v);
    ok(t->storage->refs == 1, "releasing the alias drops its reference");
    int64_t bad[1] = {25};
    ok(gl_tensor_alias(t, 1, bad) == NULL && strstr(gl_error_message(), "invalid for a tensor of shape [2,3,4]"),
       "wrong view shape is an error value: %s", gl_error_message());
    int64_t huge[2] = {INT64_MAX, 4};
    ok(gl_tensor_new(GL_F32, 2, huge) == NULL, "overflowing shape is rejected: %s", gl_error_message());
    gl_tensor_release(t);
}

static void test_rng(void)
{
    gl_rng_seed(42);
    double a = gl_rng_normal(), b = gl_rng_uniform();
    gl_rng_state s;
    gl_rng_get(&s);
    double c = gl_rng_normal();
    gl_rng_seed(42);
    ok(gl_rng_normal() == a && gl_rng_uniform() == b, "same seed, same draws");
    gl_rng_set(&s);
    ok(gl_rng_normal() == c, "restored state continues the stream");
    double sum = 0, sq = 0;
    for (int i = 0; i < 100000; i++) {
        double x = gl_rng_normal();
        sum += x;
        sq += x * x;
    }
    ok(fabs(sum / 1e5) < 0.02 && fabs(sq / 1e5 - 1) < 0.02, "normal draws have mean 0, variance 1");
}

static void test_backward(void)
{
    /* y = sum over broadcast of (a * b + a), a [2,3], b [3] */
    int64_t sa[2] = {2, 3}, sb[1] = {3};
    gl_tensor *a = gl_full(GL_F32, 2, sa, 2.0), *b = gl_full(GL_F32, 1, sb, 3.0);
    gl_set_requires_grad(a, true);
    gl_set_requires_grad(b, true);
    gl_tensor *ab = gl_mul(a, b);
    gl_tensor *y = gl_add(ab, a);
    ok(y && y->grad_fn != NULL, "ops on grad tensors record nodes");
    gl_tensor *ones = gl_full(GL_F32, 2, sa, 1.0);
    ok(gl_backward(y, ones, false) == GL_OK, "backward runs");
    ok(a->grad && gl_tensor_f32(a->grad)[0] == 4.0f, "da = b + 1 = 4");
    ok(b->grad && gl_tensor_f32(b->grad)[0] == 4.0f, "db sums over the broadcast dim: 2 + 2 = 4");
    ok(y->grad_fn == NULL, "graph freed after backward");
    gl_tensor *seed = gl_full(GL_F32, 1, sb, 0.5);
    ok(gl_backward(b, seed, false) == GL_OK && gl_tensor_f32(b->grad)[1] == 4.5f,
       "backward of a leaf adds the seed to its gradient");
    gl_tensor *eye = gl_eye(4);
    ok(gl_add(a, eye) == NULL && strstr(gl_error_message(), "cannot broadcast"),
       "broadcast mismatch names the shapes: %s", gl_error_message());
    gl_tensor_release(eye);
    char *s = gl_tensor_format(a);
    ok(s && strstr(s, "shape=[2,3]") && strstr(s, "dtype=f32"), "tensor prints with shape and dtype: %s", s);
    free(s);
    gl_tensor_release(seed);
    gl_tensor_release(ones);
    gl_tensor_release(y);
    gl_tensor_release(ab);
    gl_tensor_release(a);
    gl_tensor_release(b);
}

int main(void)
{
    test_shapes();
    test_rng();
    test_backward();
    return done_testing();
}
