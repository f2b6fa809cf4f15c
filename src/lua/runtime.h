/* A Lua state set up the way the genlab program runs code: standard
 * libraries, `genlab.core` linked in, genlab's Lua files on package.path,
 * and `arg` for scripts. */
#ifndef GL_LUA_RUNTIME_H
#define GL_LUA_RUNTIME_H

#include <lua.h>

lua_State *gl_runtime_new(void);
/* The directory of genlab's Lua files: $GENLAB_LUADIR, else the source
 * tree when this program runs from its build tree, else the installed one. */
const char *gl_runtime_luadir(void);
/* The shipped examples, found the same way (no environment override). */
const char *gl_runtime_examples_dir(void);
/* Sets the global `arg` like lua.c: arg[0] = script, arg[1..] = args. */
void gl_runtime_set_args(lua_State *L, const char *script, int argc, char **argv);
/* Runs chunk/file with a traceback handler; on error prints "genlab: msg" and
 * the traceback to stderr and returns nonzero. */
int gl_runtime_dofile(lua_State *L, const char *path, int nargs);
int gl_runtime_dostring(lua_State *L, const char *code, const char *name);
/* The traceback message handler, for callers doing their own lua_pcall. */
int gl_runtime_traceback(lua_State *L);

#endif
