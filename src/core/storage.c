#include "core/storage.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* --- large blocks ----------------------------------------------------------------
 *
 * Blocks of BIG_MIN bytes and more are mapped from the kernel, not taken
 * from malloc's heap. Training allocates and frees tensors of a few sizes in
 * the same order every step; in the heap, a freed block can be reused only
 * by a request that fits its hole, the rest of the hole and every hole
 * nothing fits stay resident, and the baby GPT's peak RSS was 0.4-0.65 GB
 * above its peak of live tensors. Freed mappings are kept in a cache and
 * handed out again to requests of their size (or smaller ones, see below),
 * so a step does not fault its memory in anew (that cost 15-20% of a
 * nanoGPT step when glibc returned big blocks at once). A request the cache
 * cannot serve first unmaps cached blocks, oldest first, as far as needed
 * to keep the mapped bytes (live + cached) within the peak of live large
 * blocks so far: the cache never raises the peak RSS by more than SLACK
 * (and the waste allowance below), and in a training loop, whose every
 * step reaches the same peak, it keeps what the next step needs. Without
 * the slack, blocks of two sizes freed and requested in turn evicted each
 * other every step (a nanoGPT step faulted in 3 MB anew).
 *
 * A request that no cached block fits exactly takes the smallest larger one
 * whole, while the bytes such blocks hold beyond their requests stay within
 * WASTE_MAX (or an eighth of the peak, if more). A network's tensors come in
 * many sizes whose counts peak at different points of a step: exact sizes
 * alone needed more than twice the peak of live bytes to stop missing (DDIM
 * sampling with the UNet faulted some 4,000 pages a step, 7% of its time,
 * under a peak of 23 MB), and a bigger slack would raise the peak RSS. The
 * live bytes above count whole blocks: the mapped bytes stay within their
 * peak plus SLACK, which exceeds the peak of the tensors' own bytes by the
 * waste allowance at most. */

enum {
    BIG_MIN = 1 << 20,   /* smaller blocks come from malloc */
    CACHE_SLOTS = 128,   /* freed blocks kept for reuse, at most */
    PAGE = 4096,         /* blocks are whole pages ... */
    HUGE_PAGE = 2 << 20, /* ... and from HUGE_MIN whole huge pages, which the kernel aligns and backs */
    HUGE_MIN = 16 << 20, /* with huge pages (a fault per 2 MiB, not per 4 KiB), for an eighth at most */
    SLACK = 4 << 20,     /* mapped bytes allowed beyond the peak of live ones (see below) */
    WASTE_MAX = 8 << 20, /* bytes of live blocks beyond their requests allowed, at least (see above) */
};

typedef struct {
    void *data;
    size_t size; /* mapped bytes */
} big_block;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static big_block cache[CACHE_SLOTS]; /* oldest first */
static int cached;
static size_t mapped, live_big, peak_big; /* bytes: all mapped, in live blocks, the peak of live_big */
static size_t waste;                     /* bytes of live blocks beyond their requests */

static size_t big_size(size_t nbytes)
{
    size_t unit = nbytes >= HUGE_MIN ? HUGE_PAGE : PAGE;
    return (nbytes + unit - 1) / unit * unit;
}

/* Drops cache[i], keeping the order of the rest. Called locked. */
static big_block cache_take(int i)
{
    big_block b = cache[i];
    memmove(cache + i, cache + i + 1, (size_t)(cached - i - 1) * sizeof *cache);
    cached--;
    return b;
}

/* The cached block for a request of size bytes, or -1: the most recently
 * freed one of that size (likely still in the CPU caches), else the smallest
 * larger one within the waste allowance. Called locked. */
static int cache_find(size_t size)
{
    int best = -1;
    size_t allow = peak_big / 8 > WASTE_MAX ? peak_big / 8 : WASTE_MAX;
    for (int i = cached; i-- > 0;) {
        if (cache[i].size == size) return i;
        if (cache[i].size > size && waste + (cache[i].size - size) <= allow &&
            (best < 0 || cache[i].size < cache[best].size))
            best = i;
    }
    return best;
}

/* A block for size bytes, of *got >= size mapped bytes; *fresh when it was
 * mapped now (zero-filled). */
static void *big_alloc(size_t size, size_t *got, bool *fresh)
{
    big_block evict[CACHE_SLOTS];
    int n_evict = 0;
    size_t evicted = 0;
    void *data = NULL;
    pthread_mutex_lock(&cache_lock);
    int hit = cache_find(size);
    if (hit >= 0) {
        big_block b = cache_take(hit);
        data = b.data;
        waste += b.size - size;
        size = b.size;
    }
    *got = size;
    live_big += size;
    if (live_big > peak_big) peak_big = live_big;
    if (!data) {
        mapped += size;
        while (mapped - evicted > peak_big + SLACK && cached > 0) {
            evict[n_evict] = cache_take(0);
            evicted += evict[n_evict++].size;
        }
        mapped -= evicted;
    }
    pthread_mutex_unlock(&cache_lock);
    for (int i = 0; i < n_evict; i++) munmap(evict[i].data, evict[i].size);
    *fresh = !data;
    if (data) return data;
    data = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) {
        pthread_mutex_lock(&cache_lock);
        mapped -= size;
        live_big -= size;
        pthread_mutex_unlock(&cache_lock);
        return NULL;
    }
    madvise(data, size, MADV_HUGEPAGE); /* fewer faults and TLB misses; a hint, ignored where unsupported */
    return data;
}

/* Frees a block of size mapped bytes that served a request of asked bytes. */
static void big_free(void *data, size_t size, size_t asked)
{
    big_block old = {NULL, 0};
    pthread_mutex_lock(&cache_lock);
    waste -= size - asked;
    if (cached == CACHE_SLOTS) {
        old = cache_take(0);
        mapped -= old.size;
    }
    cache[cached++] = (big_block){data, size};
    live_big -= size;
    pthread_mutex_unlock(&cache_lock);
    if (old.data) munmap(old.data, old.size);
}

/* --- storage ------------------------------------------------------------------ */

static gl_storage *storage_alloc(size_t nbytes, bool zero)
{
    gl_storage *s = calloc(1, sizeof *s);
    /* aligned_alloc needs a size that is a multiple of the alignment */
    size_t rounded = (nbytes + 63) & ~(size_t)63;
    if (rounded < nbytes || (rounded >= BIG_MIN && big_size(rounded) < rounded)) {
        free(s);
        return gl_error_null(GL_ENOMEM, "allocation of %zu bytes overflows", nbytes);
    }
    bool fresh = false, big = rounded >= BIG_MIN;
    size_t block = 0;
    void *data = !s || !rounded ? NULL
                 : big             ? big_alloc(big_size(rounded), &block, &fresh)
                                   : aligned_alloc(64, rounded);
    if (!s || (rounded && !data)) {
        free(s);
        if (!big) free(data);
        return gl_error_null(GL_ENOMEM, "out of memory allocating %zu bytes", nbytes);
    }
    if (rounded && zero && !fresh) memset(data, 0, rounded);
    s->data = data;
    s->nbytes = nbytes;
    s->block = block;
    s->refs = 1;
    account(nbytes);
    return s;
}

gl_storage *gl_storage_new(size_t nbytes) { return storage_alloc(nbytes, true); }
gl_storage *gl_storage_new_uninit(size_t nbytes) { return storage_alloc(nbytes, false); }

void gl_storage_retain(gl_storage *s) { atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed); }

void gl_storage_release(gl_storage *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) > 1) return;
    size_t rounded = (s->nbytes + 63) & ~(size_t)63;
    if (rounded >= BIG_MIN)
        big_free(s->data, s->block, big_size(rounded));
    else
        free(s->data);
    atomic_fetch_sub(&live_bytes, s->nbytes);
    free(s);
}

size_t gl_mem_live_bytes(void) { return atomic_load(&live_bytes); }
size_t gl_mem_peak_bytes(void) { return atomic_load(&peak_bytes); }
void gl_mem_reset_peak(void) { atomic_store(&peak_bytes, atomic_load(&live_bytes)); }
