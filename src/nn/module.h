/* Modules: named parameters, buffers and submodules, like torch.nn.Module.
 *
 * A gl_module is a class (name, forward, summary text, destructor) plus an
 * ordered set of named parameters (f32 tensors that require grad unless
 * frozen), named buffers (state without gradients, e.g. running statistics
 * or masks) and named children. Built-in layers (nn/layers.h) and the models
 * of src/models are gl_modules composed from each other, so traversals give
 * dotted names ("h.0.ln_1.bias") that match PyTorch's state dicts.
 *
 * Ownership: gl_module_new returns one reference; gl_module_release drops it.
 * A module holds one reference on each of its tensors and children, so a
 * child may be shared by two parents and a tensor by two modules (weight
 * tying: named_parameters lists a shared tensor once, state_dict under every
 * name, as PyTorch does).
 *
 * Freezing a parameter is clearing its requires_grad: backward then gives it
 * no gradient and optimizers skip it. */
#ifndef GL_NN_MODULE_H
#define GL_NN_MODULE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

/* --- lists of (name, tensor), the currency of state dicts ------------------- */

typedef struct gl_named_tensor {
    char *name;   /* owned; may be NULL in lists of bare tensors */
    gl_tensor *t; /* one reference */
} gl_named_tensor;

typedef struct gl_tensor_list {
    int64_t n, cap;
    gl_named_tensor *items;
} gl_tensor_list;

#define GL_TENSOR_LIST_INIT {0, 0, NULL}

/* Appends (a copy of name, a reference to t). name may be NULL. */
gl_status gl_tensor_list_add(gl_tensor_list *l, const char *name, gl_tensor *t);
/* The tensor named name, or NULL (borrowed). */
gl_tensor *gl_tensor_list_find(const gl_tensor_list *l, const char *name);
/* Drops every entry; the list can be reused. */
void gl_tensor_list_clear(gl_tensor_list *l);

/* Copies src into dst by name, after checking everything first so that a
 * failed load changes nothing. With strict, a name of dst missing from src or
 * a name of src unknown to dst is an error listing them all; otherwise those
 * names are appended to missing / unexpected (either may be NULL). A shape or
 * dtype difference is always an error:
 *   load_state_dict: 'fc.weight' has shape [4,3] in the file, [3,4] in the model */
gl_status gl_state_dict_load(const gl_tensor_list *dst, const gl_tensor_list *src, bool strict,
                             gl_tensor_list *missing, gl_tensor_list *unexpected);

/* --- modules ----------------------------------------------------------------- */

typedef struct gl_module gl_module;

typedef struct gl_module_class {
    const char *name; /* "Linear" */
    /* One tensor in, one new tensor out; NULL for containers and models
     * whose forward takes more (they export their own gl_<model>_forward). */
    gl_tensor *(*forward)(gl_module *m, gl_tensor *x);
    /* Hyperparameters for summaries, e.g. "in_features=4, out_features=3, bias=true"; may be NULL. */
    void (*extra_repr)(const gl_module *m, char *buf, size_t n);
    /* Frees m->impl; NULL means free(m->impl). */
    void (*destroy_impl)(void *impl);
} gl_module_class;

typedef struct gl_named_module {
    char *name;
    gl_module *m;
} gl_named_module;

struct gl_module {
    atomic_int refs; /* atomic: data-parallel shares retain shared modules (gpt_parallel.c) */
    const gl_module_class *cls;
    bool training;              /* true after construction, as in PyTorch */
    void *impl;                 /* class-owned data: hyperparameters */
    gl_tensor_list params;      /* in registration order */
    gl_tensor_list buffers;
    int64_t n_children, cap_children;
    gl_named_module *children;
};

/* A module of class cls owning impl (freed with the module, or at once on failure). */
gl_module *gl_module_new(const gl_module_class *cls, void *impl);
void gl_module_retain(gl_module *m);
void gl_module_release(gl_module *m);

/* Registration. Names are unique among a module's parameters, buffers and
 * children, and contain no '.'. add_param takes a reference and turns on
 * requires_grad (params must be f32); add_buffer and add_child take a reference. */
gl_status gl_module_add_param(gl_module *m, const char *name, gl_tensor *t);
gl_status gl_module_add_buffer(gl_module *m, const char *name, gl_tensor *t);
gl_status gl_module_add_child(gl_module *m, const char *name, gl_module *child);
/* Replaces an existing parameter or buffer by a tensor of the same shape and
 * dtype (weight tying, weights living in a file mapping). */
gl_status gl_module_set_tensor(gl_module *m, const char *name, gl_tensor *t);

/* Direct members by name (borrowed), or NULL. */
gl_tensor *gl_module_param(const gl_module *m, const char *name);
gl_tensor *gl_module_buffer(const gl_module *m, const char *name);
gl_module *gl_module_child(const gl_module *m, const char *name);
/* A parameter or buffer anywhere below m by dotted name ("h.0.ln_1.bias"), or NULL. */
gl_tensor *gl_module_find_tensor(const gl_module *m, const char *dotted);

/* The class's forward; an error naming the class when it has none. */
gl_tensor *gl_module_forward(gl_module *m, gl_tensor *x);

/* Sets the training flag of m and every module below it. */
void gl_module_train(gl_module *m, bool on);
/* requires_grad of every parameter below m: false freezes them all. */
void gl_module_requires_grad(gl_module *m, bool on);
/* Drops the gradients of every parameter below m. */
void gl_module_zero_grad(gl_module *m);

/* Traversals append (dotted name, tensor) to out in PyTorch's order: a
 * module's own entries first, then each child's, depth first.
 * named_parameters and named_buffers list a shared tensor once (first name);
 * state_dict lists parameters and buffers under every name. */
gl_status gl_module_named_parameters(const gl_module *m, gl_tensor_list *out);
gl_status gl_module_named_buffers(const gl_module *m, gl_tensor_list *out);
gl_status gl_module_state_dict(const gl_module *m, gl_tensor_list *out);
/* gl_state_dict_load into the tensors of gl_module_state_dict(m). */
gl_status gl_module_load_state_dict(gl_module *m, const gl_tensor_list *sd, bool strict, gl_tensor_list *missing,
                                    gl_tensor_list *unexpected);

/* Elements over distinct parameters; trainable_only counts those requiring grad. */
int64_t gl_module_num_parameters(const gl_module *m, bool trainable_only);
/* A malloc'd multi-line tree: one line per module with its hyperparameters and
 * its own tensors' shapes, children indented and named, as PyTorch prints:
 *   Linear(in_features=4, out_features=3, bias=true)  weight [3,4]  bias [3]
 * NULL when out of memory. */
char *gl_module_describe(const gl_module *m);

#endif
