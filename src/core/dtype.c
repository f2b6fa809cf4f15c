#include "core/dtype.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[GL_DTYPE_COUNT] = {
    [GL_F32] = {"f32", 4},
    [GL_I32] = {"i32", 4},
    [GL_I64] = {"i64", 8},
    [GL_U8] = {"u8", 1},
};

size_t gl_dtype_size(gl_dtype dt) { return dtypes[dt].size; }
const char *gl_dtype_name(gl_dtype dt) { return dtypes[dt].name; }
int gl_dtype_is_int(gl_dtype dt) { return dt != GL_F32; }

int gl_dtype_from_name(const char *name)
{
    static const struct {
        const char *alias;
        gl_dtype dt;
    } aliases[] = {
        {"f32", GL_F32}, {"float32", GL_F32}, {"float", GL_F32},
        {"i32", GL_I32}, {"int32", GL_I32}, {"int", GL_I32},
        {"i64", GL_I64}, {"int64", GL_I64}, {"long", GL_I64},
        {"u8", GL_U8},   {"uint8", GL_U8},  {"byte", GL_U8},
    };
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcmp(name, aliases[i].alias) == 0) return (int)aliases[i].dt;
    return -1;
}
