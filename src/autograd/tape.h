/* Define-by-run autograd. Every op that may need a gradient calls
 * gl_autograd_record after computing its output; the node remembers the op,
 * its inputs (retained), what backward needs (saved aliases and scalar
 * arguments) and its backward function, which sits next to the forward in the
 * op's own file. gl_backward walks the nodes reachable from the root in
 * reverse topological order; each backward ADDS into its inputs' gradients
 * (or writes a buffer that gl_node_grad_init reports as new). */
#ifndef GL_AUTOGRAD_TAPE_H
#define GL_AUTOGRAD_TAPE_H

#include <stdbool.h>

#include "core/error.h"
#include "core/tensor.h"

#define GL_NODE_MAX_INPUTS 4
#define GL_NODE_MAX_SAVED 4

typedef gl_status (*gl_backward_fn)(gl_node *node);

struct gl_node {
    gl_node_header header;
    const char *op;
    gl_backward_fn backward;
    int n_inputs;
    gl_tensor *inputs[GL_NODE_MAX_INPUTS];
    gl_tensor *saved[GL_NODE_MAX_SAVED]; /* aliases: share storage, carry no graph */
    gl_tensor *out;                      /* weak: the tensor this node produced */
    gl_tensor *gout;                     /* gradient w.r.t. out, alive during backward */
    double f[4];                         /* scalar arguments of the op */
    int64_t i[2 * GL_MAX_DIMS];          /* integer arguments of the op */
    void *extra;                         /* op-owned data, released with free() ... */
    void (*extra_free)(void *extra);     /* ... or with this, when set */
    int visit;                           /* traversal mark */
    bool consumed;                       /* set by a backward pass that frees the graph as it runs */
};

/* Whether ops record (false inside no_grad). Per thread. */
bool gl_grad_enabled(void);
/* Sets recording on or off and returns the previous setting. */
bool gl_grad_set_enabled(bool on);

/* True when recording is on and some input requires a gradient. */
bool gl_autograd_needed(int n, gl_tensor *const *inputs);
/* Attaches a node to out when gl_autograd_needed; *node is NULL otherwise. */
gl_status gl_autograd_record(gl_node **node, gl_tensor *out, const char *op, gl_backward_fn backward,
                             int n, gl_tensor *const *inputs);
/* Keeps an alias of t in slot for backward. */
gl_status gl_node_save(gl_node *node, int slot, const gl_tensor *t);
/* The f32 buffer into which backward adds input i's gradient, allocated as
 * zeros on first use; *buf is NULL when input i needs no gradient. */
gl_status gl_node_grad(gl_node *node, int i, float **buf);
/* As gl_node_grad, but a buffer allocated now is NOT zeroed and *fresh says
 * so: the caller must then WRITE every element (not add), which saves the
 * zero fill and a read. *fresh is false when the buffer already held a sum. */
gl_status gl_node_grad_init(gl_node *node, int i, float **buf, bool *fresh);
/* For ops whose input gradient is their output gradient element for element
 * (reshape, add): when input i needs a gradient and has none yet, makes the
 * node's gout its gradient, shared, not copied (gout is not used again once
 * this node's backward has run), and sets *taken. Otherwise the caller adds
 * as usual. */
gl_status gl_node_grad_take(gl_node *node, int i, bool *taken);
/* For ops whose input i is needed by no one once this node's backward has
 * run (the graph is being freed, and no other node, view or alias refers to
 * the tensor or its storage): when input i needs a gradient and has none
 * yet, makes the input's own storage its gradient, and sets *reused. The
 * caller must then WRITE every element of *buf (not add), each after its
 * last read of the input's value. Otherwise *buf is NULL. */
gl_status gl_node_grad_reuse(gl_node *node, int i, float **buf, bool *reused);

/* The gradient tensor behind gl_node_grad's buffer for input i (NULL when
 * there is none yet or input i needs no gradient). */
gl_tensor *gl_node_grad_tensor(gl_node *node, int i);

/* Data-parallel replicas (src/models/gpt_parallel.c) share the parameters
 * but must not add into the same gradients at once. While a thread uses a
 * sink, the gradients of the sink's leaves go into the sink instead of the
 * leaves' grad; gl_grad_sink_merge then adds them into the leaves. */
typedef struct gl_grad_sink gl_grad_sink;
/* A sink for these leaves (retained); NULL with an error when out of memory. */
gl_grad_sink *gl_grad_sink_new(int n, gl_tensor *const *leaves);
void gl_grad_sink_free(gl_grad_sink *s);
/* Makes the calling thread's leaf gradients go to s (NULL: to the leaves);
 * returns the sink it used before. */
gl_grad_sink *gl_grad_sink_use(gl_grad_sink *s);
/* Adds the gradients held by n sinks over the same leaves into the leaves'
 * grad (in sink order), and empties the sinks. */
void gl_grad_sink_merge(int n, gl_grad_sink *const *sinks);

/* Backpropagates from root. grad may be NULL for a one-element root. */
gl_status gl_backward(gl_tensor *root, const gl_tensor *grad, bool retain_graph);
/* As gl_backward(root, grad, false), but grad (f32, root's element count)
 * becomes the root's gradient buffer instead of being added into a new one:
 * the caller must not read grad's values afterwards. */
gl_status gl_backward_take(gl_tensor *root, gl_tensor *grad);
/* A tensor sharing t's data, outside any graph, not requiring grad. */
gl_tensor *gl_detach(const gl_tensor *t);
/* Marks a leaf as requiring a gradient (f32 only). */
gl_status gl_set_requires_grad(gl_tensor *t, bool on);

#endif
