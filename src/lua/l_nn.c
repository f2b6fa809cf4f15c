/* Binding of the nn area (being written). */
#include "lua/binding.h"

void gl_lua_open_nn(lua_State *L, int module_idx)
{
    (void)L;
    (void)module_idx;
}
