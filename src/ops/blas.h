#ifndef GL_OPS_BLAS_H
#define GL_OPS_BLAS_H

/* OpenBLAS's own description: version, target CPU, threading model. */
const char *gl_blas_config(void);

#endif
