/* gl.json: JSON text <-> Lua values, through cJSON.
 *
 *   gl.json.encode(value [, {indent=true}]) -> string
 *   gl.json.decode(text) -> value
 *   gl.json.null          the value JSON null decodes to (nil cannot sit in a table)
 *   gl.json.array(t)      marks t as an array, so an empty one encodes as [] (not {})
 *
 * A table whose keys are exactly 1..n is an array; any other table is an
 * object whose keys must be strings (or numbers, written as strings, as
 * JavaScript does). Integers stay integers both ways (up to 2^53); NaN and
 * infinity, functions, cycles and nesting deeper than GL_JSON_DEPTH are errors. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lua/binding.h"

#define GL_JSON_DEPTH 200

static const char null_key = 0;  /* the address of this names gl.json.null */
static const char array_key = 0; /* the address of this names the array marker metatable */

static void push_null(lua_State *L) { lua_pushlightuserdata(L, (void *)&null_key); }

static int is_array_marked(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx)) return 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
    int marked = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return marked;
}

/* n > 0 when the table at idx is a sequence 1..n with no other keys; 0 for an
 * empty table; -1 otherwise. */
static lua_Integer sequence_length(lua_State *L, int idx)
{
    lua_Integer count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return -1;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k > max) max = k;
        count++;
    }
    return count == max ? count : -1;
}

/* Creates the cJSON item of the value at idx and attaches it to parent at
 * once (under key in objects), so that when a nested value fails, deleting
 * the root frees everything built so far before raising. */
static cJSON *add_json(lua_State *L, int idx, int depth, cJSON *root, cJSON *parent, const char *key);

static void fail(lua_State *L, cJSON *root, const char *fmt, const char *what)
{
    cJSON_Delete(root);
    luaL_error(L, fmt, what);
}

static cJSON *new_item(lua_State *L, int idx, int depth, cJSON *root)
{
    if (depth > GL_JSON_DEPTH) fail(L, root, "json.encode: %s (a cycle?)", "nesting deeper than 200 levels");
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return cJSON_CreateNull();
    case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
        double v = lua_tonumber(L, idx);
        if (!isfinite(v)) fail(L, root, "json.encode: %s has no JSON form", isnan(v) ? "NaN" : "infinity");
        if (lua_isinteger(L, idx) && fabs(v) > 9007199254740992.0)
            fail(L, root, "json.encode: %s", "an integer beyond 2^53 would lose digits in JSON");
        return cJSON_CreateNumber(v);
    }
    case LUA_TSTRING: return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == &null_key) return cJSON_CreateNull();
        break;
    case LUA_TTABLE: {
        lua_Integer n = sequence_length(L, idx);
        return n > 0 || (n == 0 && is_array_marked(L, idx)) ? cJSON_CreateArray() : cJSON_CreateObject();
    }
    default: break;
    }
    fail(L, root, "json.encode: a %s has no JSON form", luaL_typename(L, idx));
    return NULL;
}

static void fill_table(lua_State *L, int idx, int depth, cJSON *root, cJSON *container)
{
    if (cJSON_IsArray(container)) {
        lua_Integer n = sequence_length(L, idx);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            add_json(L, lua_gettop(L), depth + 1, root, container, NULL);
            lua_pop(L, 1);
        }
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        char numkey[64];
        const char *key = numkey;
        if (lua_type(L, -2) == LUA_TSTRING)
            key = lua_tostring(L, -2);
        else if (lua_isinteger(L, -2))
            snprintf(numkey, sizeof numkey, "%lld", (long long)lua_tointeger(L, -2));
        else if (lua_type(L, -2) == LUA_TNUMBER)
            snprintf(numkey, sizeof numkey, "%.17g", lua_tonumber(L, -2));
        else
            fail(L, root, "json.encode: a table key of type %s cannot be a JSON object key", luaL_typename(L, -2));
        add_json(L, lua_gettop(L), depth + 1, root, container, key);
        lua_pop(L, 1);
    }
}

static cJSON *add_json(lua_State *L, int idx, int depth, cJSON *root, cJSON *parent, const char *key)
{
    if (!lua_checkstack(L, 4)) fail(L, root, "json.encode: %s", "nesting too deep for the Lua stack");
    cJSON *item = new_item(L, idx, depth, root);
    if (!item) fail(L, root, "json.encode: %s", "out of memory");
    if (!parent)
        root = item;
    else if (key)
        cJSON_AddItemToObject(parent, key, item);
    else
        cJSON_AddItemToArray(parent, item);
    if (lua_type(L, idx) == LUA_TTABLE) fill_table(L, idx, depth, root, item);
    return item;
}

static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    bool indent = false;
    if (!lua_isnoneornil(L, 2)) {
        static const char *const keys[] = {"indent", NULL};
        gl_lua_check_options(L, 2, "json.encode", keys);
        lua_getfield(L, 2, "indent");
        indent = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    lua_settop(L, 1);
    cJSON *item = add_json(L, 1, 0, NULL, NULL, NULL);
    char *text = indent ? cJSON_Print(item) : cJSON_PrintUnformatted(item);
    cJSON_Delete(item);
    if (!text) return luaL_error(L, "json.encode: out of memory");
    lua_pushstring(L, text);
    cJSON_free(text);
    return 1;
}

static void push_value(lua_State *L, const cJSON *item, int depth)
{
    luaL_checkstack(L, 4, "json.decode: nesting too deep");
    if (cJSON_IsNull(item)) {
        push_null(L);
    } else if (cJSON_IsBool(item)) {
        lua_pushboolean(L, cJSON_IsTrue(item));
    } else if (cJSON_IsNumber(item)) {
        double v = item->valuedouble;
        if (v == floor(v) && fabs(v) < 9007199254740992.0)
            lua_pushinteger(L, (lua_Integer)v);
        else
            lua_pushnumber(L, v);
    } else if (cJSON_IsString(item)) {
        lua_pushstring(L, item->valuestring);
    } else if (cJSON_IsArray(item)) {
        lua_createtable(L, cJSON_GetArraySize(item), 0);
        lua_Integer i = 1;
        for (const cJSON *c = item->child; c; c = c->next) {
            push_value(L, c, depth + 1);
            lua_rawseti(L, -2, i++);
        }
        if (i == 1) { /* keep [] an array when it is encoded again */
            lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
            lua_setmetatable(L, -2);
        }
    } else { /* object */
        lua_newtable(L);
        for (const cJSON *c = item->child; c; c = c->next) {
            push_value(L, c, depth + 1);
            lua_setfield(L, -2, c->string);
        }
    }
}

static int l_decode(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *end = NULL;
    if (memchr(text, 0, len)) return luaL_error(L, "json.decode: text holds a NUL byte");
    /* Lua strings end in a NUL, which cJSON needs to see to reject trailing text. */
    cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        if (at > len) at = len;
        char near[24];
        size_t n = len - at < sizeof near - 1 ? len - at : sizeof near - 1;
        memcpy(near, text + at, n);
        near[n] = 0;
        for (size_t i = 0; i < n; i++)
            if (near[i] == '\n' || near[i] == '\r' || near[i] == '\t') near[i] = ' ';
        if (len == 0) return luaL_error(L, "json.decode: empty text");
        if (at >= len) return luaL_error(L, "json.decode: invalid JSON: the text ends early or has a stray character at its end");
        return luaL_error(L, "json.decode: invalid JSON at byte %d near '%s'", (int)at + 1, near);
    }
    push_value(L, root, 0);
    cJSON_Delete(root);
    return 1;
}

static int l_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) lua_newtable(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
    lua_setmetatable(L, 1);
    return 1;
}

void gl_lua_open_json(lua_State *L, int module_idx)
{
    lua_newtable(L); /* the array marker metatable */
    lua_pushliteral(L, "json array");
    lua_setfield(L, -2, "__name");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &array_key);

    static const luaL_Reg funcs[] = {{"encode", l_encode}, {"decode", l_decode}, {"array", l_array}, {NULL, NULL}};
    lua_newtable(L);
    luaL_setfuncs(L, funcs, 0);
    push_null(L);
    lua_setfield(L, -2, "null");
    lua_setfield(L, module_idx, "json");
}
