/* The line REPL: readline input, multi-line chunks, printed results,
 * Ctrl-C interrupts the running computation and returns to the prompt.
 * The pieces the workbench (app.c) shares are declared below. */
#ifndef GL_TUI_REPL_H
#define GL_TUI_REPL_H

#include <lua.h>

#define GL_REPL_HISTORY_MAX 1000

int gl_repl_main(int argc, char **argv);

enum { GL_CHUNK_READY, GL_CHUNK_MORE, GL_CHUNK_ERROR };
/* Compiles src as `return src` or else as statements. Pushes the function
 * (READY) or the statement form's error (ERROR); MORE (the input ends too
 * early) pushes nothing. */
int gl_repl_compile(lua_State *L, const char *src);
/* show(...) as a lua_CFunction: keeps the first value in `_` and prints them
 * all tab-separated to stdout. */
int gl_repl_show(lua_State *L);
/* readline's Tab completion of Lua globals, fields and methods in L; names
 * are looked up from the table at registry[GL_REPL_SCOPE] when it is one. */
#define GL_REPL_SCOPE "genlab.repl.scope"
void gl_repl_completion_install(lua_State *L);
/* The history file ($GENLAB_HISTORY, else ~/.genlab_history; NULL for
 * none), read into readline's history; malloc'd. */
char *gl_repl_history_open(void);
/* Adds a non-blank line unless it repeats the last; appends it to path. */
void gl_repl_history_add(const char *path, const char *line);
/* The global help(x): short documentation of genlab functions. */
void gl_repl_help_install(lua_State *L);

#endif
