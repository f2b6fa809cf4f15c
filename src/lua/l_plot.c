/* Binding of the plot area (being written). */
#include "lua/binding.h"

void gl_lua_open_plot(lua_State *L, int module_idx)
{
    (void)L;
    (void)module_idx;
}
