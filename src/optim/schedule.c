#include "optim/schedule.h"

#include <math.h>

gl_status gl_schedule_check(const gl_schedule *s)
{
    if (!(s->lr >= 0)) return gl_error(GL_EINVAL, "schedule: lr must be >= 0 (got %g)", s->lr);
    switch (s->kind) {
    case GL_SCHEDULE_CONSTANT: return GL_OK;
    case GL_SCHEDULE_STEP:
        if (s->step_size < 1)
            return gl_error(GL_EINVAL, "step: step_size must be >= 1 (got %lld)", (long long)s->step_size);
        if (!(s->gamma >= 0)) return gl_error(GL_EINVAL, "step: gamma must be >= 0 (got %g)", s->gamma);
        return GL_OK;
    case GL_SCHEDULE_COSINE:
        if (s->warmup < 0) return gl_error(GL_EINVAL, "cosine: warmup must be >= 0 (got %lld)", (long long)s->warmup);
        if (s->max_steps < s->warmup)
            return gl_error(GL_EINVAL, "cosine: max_steps (%lld) must be >= warmup (%lld)", (long long)s->max_steps,
                            (long long)s->warmup);
        if (!(s->min_lr >= 0 && s->start_lr >= 0))
            return gl_error(GL_EINVAL, "cosine: min_lr and start_lr must be >= 0 (got %g, %g)", s->min_lr, s->start_lr);
        return GL_OK;
    }
    return gl_error(GL_EINVAL, "schedule: unknown kind %d", (int)s->kind);
}

double gl_schedule_lr(const gl_schedule *s, int64_t step)
{
    if (step < 0) step = 0;
    switch (s->kind) {
    case GL_SCHEDULE_CONSTANT: return s->lr;
    case GL_SCHEDULE_STEP: return s->lr * pow(s->gamma, (double)(step / s->step_size));
    case GL_SCHEDULE_COSINE:
        if (step < s->warmup) return s->start_lr + (s->lr - s->start_lr) * (double)step / (double)s->warmup;
        if (step > s->max_steps) return s->min_lr;
        if (s->max_steps == s->warmup) return s->lr;
        {
            double progress = (double)(step - s->warmup) / (double)(s->max_steps - s->warmup);
            return s->min_lr + (s->lr - s->min_lr) * 0.5 * (1.0 + cos(M_PI * progress));
        }
    }
    return s->lr;
}
