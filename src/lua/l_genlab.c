/* luaopen_genlab_core: the C half of `require "genlab"`. The Lua half
 * (lua/genlab/init.lua) requires it and adds the pure-Lua layer. */
#include "core/threads.h"
#include "lua/binding.h"

int luaopen_genlab_core(lua_State *L)
{
    gl_threads_init_from_env();
    lua_newtable(L);
    int m = lua_gettop(L);
    gl_lua_open_tensor(L, m);
    gl_lua_open_autograd(L, m);
    gl_lua_open_math(L, m);
    gl_lua_open_shape(L, m);
    gl_lua_open_nnops(L, m);
    gl_lua_open_io(L, m);
    gl_lua_open_nn(L, m);
    gl_lua_open_optim(L, m);
    gl_lua_open_sys(L, m);
    gl_lua_open_text(L, m);
    gl_lua_open_models(L, m);
    gl_lua_open_sample(L, m);
    gl_lua_open_plot(L, m);
    gl_lua_open_conv(L, m);
    gl_lua_open_norm2d(L, m);
    gl_lua_open_image(L, m);
    gl_lua_open_http(L, m);
    gl_lua_open_json(L, m);
    return 1;
}
