/* Process-wide settings and facts: seed, threads, memory, version. */
#include <omp.h>
#include <time.h>

#include "config.h"
#include "core/interrupt.h"
#include "core/rng.h"
#include "core/storage.h"
#include "core/threads.h"
#include "lua/binding.h"
#include "ops/blas.h"

static int l_seed(lua_State *L)
{
    gl_rng_seed((uint64_t)luaL_checkinteger(L, 1));
    return 0;
}

/* threads([n]) sets the OpenMP + OpenBLAS thread count; returns the count in effect. */
static int l_threads(lua_State *L)
{
    int n = lua_isnoneornil(L, 1) ? gl_threads_get() : gl_threads_set((int)luaL_checkinteger(L, 1));
    lua_pushinteger(L, n);
    return 1;
}

/* memory() -> {live = bytes, peak = bytes} of tensor storage. */
static int l_memory(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)gl_mem_live_bytes());
    lua_setfield(L, -2, "live");
    lua_pushinteger(L, (lua_Integer)gl_mem_peak_bytes());
    lua_setfield(L, -2, "peak");
    return 1;
}

static int l_system_info(lua_State *L)
{
    lua_pushfstring(L, "genlab %s; BLAS: %s; OpenMP threads: %d of %d cores", PACKAGE_VERSION, gl_blas_config(),
                    gl_threads_get(), omp_get_num_procs());
    return 1;
}

/* clock() -> seconds on a monotonic wall clock, for timing (os.clock is CPU time). */
static int l_clock(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
    return 1;
}

/* Lets a REPL or test ask for an interrupt: the next op raises "interrupted". */
static int l_interrupt(lua_State *L)
{
    (void)L;
    gl_interrupt_request();
    return 0;
}

static const luaL_Reg functions[] = {
    {"seed", l_seed}, {"threads", l_threads}, {"memory", l_memory}, {"system_info", l_system_info},
    {"interrupt", l_interrupt}, {"clock", l_clock}, {NULL, NULL},
};

void gl_lua_open_sys(lua_State *L, int module_idx)
{
    gl_lua_register(L, module_idx, functions, false);
    lua_pushstring(L, PACKAGE_VERSION);
    lua_setfield(L, module_idx, "version");
}
