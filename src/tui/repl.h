/* The line REPL: readline input, multi-line chunks, printed results,
 * Ctrl-C interrupts the running computation and returns to the prompt. */
#ifndef GL_TUI_REPL_H
#define GL_TUI_REPL_H

int gl_repl_main(int argc, char **argv);

#endif
