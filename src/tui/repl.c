/* Minimal REPL (being written). */
#include "tui/repl.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <readline/history.h>
#include <readline/readline.h>

#include "lua/runtime.h"

int gl_repl_main(int argc, char **argv)
{
    lua_State *L = gl_runtime_new();
    gl_runtime_set_args(L, "genlab", argc, argv);
    gl_runtime_dostring(L, "gl = require 'genlab'", "=init");
    char *line;
    while ((line = readline("> ")) != NULL) {
        gl_runtime_dostring(L, line, "=stdin");
        free(line);
    }
    lua_close(L);
    return 0;
}
