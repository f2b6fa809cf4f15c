/* Reference-counted byte buffers that tensors view. Storage is either owned
 * (64-byte aligned heap memory) or borrowed (e.g. a read-only file mapping)
 * with a release callback. */
#ifndef GL_CORE_STORAGE_H
#define GL_CORE_STORAGE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gl_storage {
    void *data;
    size_t nbytes;
    size_t block; /* mapped bytes of a large owned block (storage.c), which may exceed nbytes */
    atomic_int refs; /* atomic, as gl_tensor's */
    bool readonly;
} gl_storage;

/* Zero-filled owned storage; NULL with an error set when out of memory. */
gl_storage *gl_storage_new(size_t nbytes);
/* Owned storage with undefined contents, for outputs a kernel overwrites whole. */
gl_storage *gl_storage_new_uninit(size_t nbytes);
void gl_storage_retain(gl_storage *s);
void gl_storage_release(gl_storage *s);

/* Bytes of owned storage alive now and at the peak, for memory reports. */
size_t gl_mem_live_bytes(void);
size_t gl_mem_peak_bytes(void);
void gl_mem_reset_peak(void);

#endif
