#include "lua/runtime.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "lua/binding.h"


static void *allocator(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

/* True when /proc/self/exe lives in the build tree (libtool puts the real
 * binary in .libs/), so the source tree's files are the ones that match. */
static bool running_uninstalled(void)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return false;
    *slash = '\0';
    size_t len = strlen(GENLAB_BUILDDIR);
    return strncmp(exe, GENLAB_BUILDDIR, len) == 0 && (exe[len] == '\0' || strcmp(exe + len, "/.libs") == 0);
}

const char *gl_runtime_luadir(void)
{
    const char *dir = getenv("GENLAB_LUADIR");
    if (dir && *dir) return dir;
    return running_uninstalled() ? GENLAB_SRCDIR "/lua" : GENLAB_LUADIR;
}

const char *gl_runtime_examples_dir(void)
{
    return running_uninstalled() ? GENLAB_SRCDIR "/examples" : GENLAB_EXAMPLESDIR;
}

lua_State *gl_runtime_new(void)
{
    lua_State *L = lua_newstate(allocator, NULL);
    if (!L) return NULL;
    luaL_openlibs(L);
    /* genlab.core is linked into the program: preload it. */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_genlab_core);
    lua_setfield(L, -2, "genlab.core");
    lua_pop(L, 1);
    /* genlab's Lua files come first on the path. */
    const char *dir = gl_runtime_luadir();
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
    return L;
}

void gl_runtime_set_args(lua_State *L, const char *script, int argc, char **argv)
{
    lua_createtable(L, argc, 1);
    lua_pushstring(L, script);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
}

int gl_runtime_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int report(lua_State *L, int status)
{
    if (status != LUA_OK) {
        fprintf(stderr, "genlab: %s\n", lua_tostring(L, -1));
        fflush(stderr);
        lua_pop(L, 1);
    }
    return status;
}

static int docall(lua_State *L, int nargs)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, gl_runtime_traceback);
    lua_insert(L, base);
    int status = lua_pcall(L, nargs, 0, base);
    lua_remove(L, base);
    return status;
}

int gl_runtime_dofile(lua_State *L, const char *path, int nargs)
{
    int status = luaL_loadfile(L, path);
    if (status != LUA_OK) {
        lua_pop(L, nargs);
        return report(L, status);
    }
    lua_insert(L, -(nargs + 1));
    return report(L, docall(L, nargs));
}

int gl_runtime_dostring(lua_State *L, const char *code, const char *name)
{
    int status = luaL_loadbuffer(L, code, strlen(code), name);
    if (status == LUA_OK) status = docall(L, 0);
    return report(L, status);
}
