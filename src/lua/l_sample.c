/* Binding of the sample area (being written). */
#include "lua/binding.h"

void gl_lua_open_sample(lua_State *L, int module_idx)
{
    (void)L;
    (void)module_idx;
}
