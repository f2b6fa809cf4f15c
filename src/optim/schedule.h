/* Learning-rate schedules as pure functions of the step number s, the count
 * of optimizer steps already taken (0 for the first step), as PyTorch's and
 * Hugging Face's schedulers count:
 *
 *   constant  lr
 *   step      lr * gamma^floor(s / step_size)                       (torch StepLR)
 *   cosine    s < warmup:          start_lr + (lr - start_lr) * s / warmup
 *             warmup <= s <= max:  min_lr + (lr - min_lr) * (1 + cos(pi * (s - warmup) / (max - warmup))) / 2
 *             s > max:             min_lr
 *   (max is max_steps; with warmup == max_steps the cosine part is the single value lr.) */
#ifndef GL_OPTIM_SCHEDULE_H
#define GL_OPTIM_SCHEDULE_H

#include <stdint.h>

#include "core/error.h"

typedef enum { GL_SCHEDULE_CONSTANT = 0, GL_SCHEDULE_STEP, GL_SCHEDULE_COSINE } gl_schedule_kind;

typedef struct gl_schedule {
    gl_schedule_kind kind;
    double lr;                 /* the constant, the initial, or the peak learning rate */
    int64_t step_size;         /* step */
    double gamma;              /* step */
    int64_t warmup, max_steps; /* cosine */
    double start_lr, min_lr;   /* cosine */
} gl_schedule;

/* Range checks, e.g. "cosine: max_steps (10) must be >= warmup (20)". */
gl_status gl_schedule_check(const gl_schedule *s);
/* The learning rate for step s (s < 0 counts as 0). */
double gl_schedule_lr(const gl_schedule *s, int64_t step);

#endif
