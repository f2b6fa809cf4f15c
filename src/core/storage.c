#include "core/storage.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static atomic_size_t live_bytes;
static atomic_size_t peak_bytes;

static void account(size_t nbytes)
{
    size_t now = atomic_fetch_add(&live_bytes, nbytes) + nbytes;
    size_t peak = atomic_load(&peak_bytes);
    while (now > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, now)) {
    }
}

static gl_storage *storage_alloc(size_t nbytes, bool zero)
{
    gl_storage *s = calloc(1, sizeof *s);
    /* aligned_alloc needs a size that is a multiple of the alignment */
    size_t rounded = (nbytes + 63) & ~(size_t)63;
    if (rounded < nbytes) {
        free(s);
        return gl_error_null(GL_ENOMEM, "allocation of %zu bytes overflows", nbytes);
    }
    void *data = rounded ? aligned_alloc(64, rounded) : NULL;
    if (!s || (rounded && !data)) {
        free(s);
        free(data);
        return gl_error_null(GL_ENOMEM, "out of memory allocating %zu bytes", nbytes);
    }
    if (rounded && zero) memset(data, 0, rounded);
    s->data = data;
    s->nbytes = nbytes;
    s->refs = 1;
    account(nbytes);
    return s;
}

gl_storage *gl_storage_new(size_t nbytes) { return storage_alloc(nbytes, true); }
gl_storage *gl_storage_new_uninit(size_t nbytes) { return storage_alloc(nbytes, false); }

gl_storage *gl_storage_wrap(void *data, size_t nbytes, bool readonly,
                            void (*release)(void *, void *, size_t), void *ctx)
{
    gl_storage *s = calloc(1, sizeof *s);
    if (!s) return gl_error_null(GL_ENOMEM, "out of memory");
    s->data = data;
    s->nbytes = nbytes;
    s->refs = 1;
    s->readonly = readonly;
    s->release = release;
    s->release_ctx = ctx;
    return s;
}

void gl_storage_retain(gl_storage *s) { s->refs++; }

void gl_storage_release(gl_storage *s)
{
    if (!s || --s->refs > 0) return;
    if (s->release) {
        s->release(s->release_ctx, s->data, s->nbytes);
    } else {
        free(s->data);
        atomic_fetch_sub(&live_bytes, s->nbytes);
    }
    free(s);
}

size_t gl_mem_live_bytes(void) { return atomic_load(&live_bytes); }
size_t gl_mem_peak_bytes(void) { return atomic_load(&peak_bytes); }
void gl_mem_reset_peak(void) { atomic_store(&peak_bytes, atomic_load(&live_bytes)); }
