/* genlab serve: an OpenAI-compatible HTTP server for one language model
 * (libmicrohttpd), and its load benchmark (libcurl). */
#ifndef GL_SERVE_SERVE_H
#define GL_SERVE_SERVE_H

/* genlab serve ARGS: exit code 0, 1 or 2. */
int gl_serve_main(int argc, char **argv);

/* genlab bench serve ARGS: starts `genlab serve` on a free port, loads it with
 * concurrent clients and compares with the same generations done in-process.
 * Exit code 0, 1 or 2. */
int gl_serve_bench_main(int argc, char **argv);

#endif
