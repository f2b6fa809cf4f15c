/* The workbench's notebook (see app.c's top comment): gl.notebook opened
 * into the Notebook pane, its lines rebuilt when it changes, its cells run
 * as jobs, edited in the input line or in $EDITOR, its outputs saved. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tui/app_internal.h"
#include "tui/repl.h"

bool app_has_notebook(void)
{
    app_push_ui("nb");
    bool yes = lua_istable(app.L, -1);
    lua_pop(app.L, 1);
    return yes;
}

/* Pushes ui.nb[method] and ui.nb (for a method call). */
void app_push_nb_method(const char *method)
{
    app_push_ui("nb");
    lua_getfield(app.L, -1, method);
    lua_insert(app.L, -2);
}

static int cell_count(void)
{
    app_push_ui("nb");
    lua_getfield(app.L, -1, "cells");
    int n = (int)lua_rawlen(app.L, -1);
    lua_pop(app.L, 2);
    return n;
}

/* Rebuilds the notebook pane's lines when the notebook changed. */
void app_refresh_notebook(bool force)
{
    if (!app_has_notebook()) return;
    app_push_ui("nb");
    lua_getfield(app.L, -1, "version");
    lua_Integer v = lua_tointeger(app.L, -1);
    lua_pop(app.L, 2);
    if (!force && v == app.nb_version) return;
    app.nb_version = v;
    if (!app_call_ui("nb_lines", 0, 2)) return;
    lua_State *L = app.L;
    gl_screen *s = &app.scr;
    gl_text_clear(&s->notebook);
    int n = (int)lua_rawlen(L, -2);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, i);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        lua_rawgeti(L, -3, 3);
        size_t len;
        const char *text = lua_tolstring(L, -3, &len), *kind = lua_tostring(L, -2);
        gl_text_kind k = strcmp(kind, "head") == 0    ? GL_TEXT_HEAD
                         : strcmp(kind, "code") == 0  ? GL_TEXT_CODE
                         : strcmp(kind, "error") == 0 ? GL_TEXT_ERROR
                         : strcmp(kind, "info") == 0  ? GL_TEXT_INFO
                                                      : GL_TEXT_OUT;
        /* the notebook pane does not interpret escapes: drop them */
        char *clean = malloc(len + 1);
        size_t m = 0;
        for (size_t b = 0; clean && b < len; b++) {
            if (text[b] == '\033' && b + 1 < len && text[b + 1] == '[') {
                b += 2;
                while (b < len && !(text[b] >= '@' && text[b] <= '~')) b++;
            } else if (text[b] == '\t') {
                clean[m++] = ' ';
            } else {
                clean[m++] = text[b];
            }
        }
        if (clean) gl_text_add(&s->notebook, clean, m, k, (int)lua_tointeger(L, -1));
        free(clean);
        lua_pop(L, 4);
    }
    int cells = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
    if (s->notebook_cell > cells) s->notebook_cell = cells;
    if (s->notebook_cell < 1 && cells > 0) s->notebook_cell = 1;
    gl_screen_dirty(s, GL_PANE_NOTEBOOK);
}

bool app_open_notebook(const char *path)
{
    lua_State *L = app.L;
    lua_getglobal(L, "gl");
    lua_getfield(L, -1, "notebook");
    lua_getfield(L, -1, "open");
    lua_pushstring(L, path);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        app_say(GL_TEXT_ERROR, lua_tostring(L, -1));
        lua_pop(L, 3);
        return false;
    }
    lua_getfield(L, -1, "env"); /* REPL input and completion see the cells' globals */
    lua_setfield(L, LUA_REGISTRYINDEX, GL_REPL_SCOPE);
    lua_rawgeti(L, LUA_REGISTRYINDEX, app.ui);
    lua_insert(L, -2);
    lua_setfield(L, -2, "nb");
    lua_pop(L, 3);
    app.scr.panes[GL_PANE_NOTEBOOK].visible = true;
    app.scr.panes[GL_PANE_NOTEBOOK].weight = 16;
    app.scr.notebook_cell = 1;
    gl_screen_layout(&app.scr);
    app_refresh_notebook(true);
    app_info("notebook %s: Ctrl-O focuses it; Up/Down pick a cell, Enter runs it, a runs all, e edits (F1: keys)", path);
    return true;
}

void app_nb_save_outputs(void)
{
    app_push_nb_method("save_outputs");
    if (lua_pcall(app.L, 1, 0, 0) != LUA_OK) {
        app_say(GL_TEXT_ERROR, lua_tostring(app.L, -1));
        lua_pop(app.L, 1);
    }
}

/* On quit: the file too when a cell was edited. */
void app_save_notebook(void)
{
    app_push_ui("nb");
    lua_getfield(app.L, -1, "dirty");
    bool dirty = lua_toboolean(app.L, -1);
    lua_pop(app.L, 2);
    app_push_nb_method(dirty ? "save" : "save_outputs");
    if (lua_pcall(app.L, 1, 0, 0) != LUA_OK) lua_pop(app.L, 1);
}

void app_run_cell_command(int cell)
{
    if (!app_has_notebook()) {
        app_say(GL_TEXT_ERROR, "no notebook open (:open PATH)");
        return;
    }
    app_start_cell_job(cell);
}

void app_restart_notebook(void)
{
    if (!app_has_notebook()) return;
    for (int i = app.njobs - 1; i >= 0; i--)
        if (app.jobs[i].notebook) { /* nb:restart cancels the notebook's job */
            luaL_unref(app.L, LUA_REGISTRYINDEX, app.jobs[i].ref);
            memmove(&app.jobs[i], &app.jobs[i + 1], (size_t)(app.njobs - i - 1) * sizeof(job));
            app.njobs--;
        }
    app_push_nb_method("restart");
    if (lua_pcall(app.L, 1, 0, 0) != LUA_OK) {
        app_say(GL_TEXT_ERROR, lua_tostring(app.L, -1));
        lua_pop(app.L, 1);
    }
    app_push_ui("nb");
    lua_getfield(app.L, -1, "env");
    lua_setfield(app.L, LUA_REGISTRYINDEX, GL_REPL_SCOPE);
    lua_pop(app.L, 1);
    app_refresh_notebook(true);
    app_info("notebook restarted: fresh globals, outputs cleared");
}

static void edit_in_editor(int cell)
{
    lua_State *L = app.L;
    app_push_ui("nb");
    lua_getfield(L, -1, "cells");
    lua_rawgeti(L, -1, cell);
    lua_getfield(L, -1, "source");
    const char *src = lua_tostring(L, -1);
    char path[] = "/tmp/genlab-cell-XXXXXX.lua";
    int fd = mkstemps(path, 4);
    bool ok = fd >= 0 && src && write(fd, src, strlen(src)) == (ssize_t)strlen(src);
    if (fd >= 0) close(fd);
    lua_pop(L, 4);
    if (!ok) {
        app_say(GL_TEXT_ERROR, "edit: cannot write a temporary file");
        return;
    }
    const char *editor = getenv("VISUAL") ? getenv("VISUAL") : getenv("EDITOR") ? getenv("EDITOR") : "vi";
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "%s '%s'", editor, path);
    def_prog_mode();
    endwin();
    app_capture_pause(true);
    int rc = system(cmd);
    app_capture_pause(false);
    reset_prog_mode();
    gl_screen_layout(&app.scr);
    FILE *f = fopen(path, "rb");
    if (rc == 0 && f) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) luaL_addlstring(&b, buf, n);
        luaL_pushresult(&b);
        app_push_nb_method("set_source");
        lua_pushinteger(L, cell);
        lua_pushvalue(L, -4);
        if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
            app_say(GL_TEXT_ERROR, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    } else {
        app_info("edit: %s exited with status %d; the cell is unchanged", editor, rc);
    }
    if (f) fclose(f);
    unlink(path);
    app_refresh_notebook(false);
}

void app_notebook_key(int key)
{
    gl_screen *s = &app.scr;
    int cells = cell_count();
    switch (key) {
    case KEY_UP:
    case 'k':
        if (s->notebook_cell > 1) s->notebook_cell--;
        gl_screen_show_cell(s);
        break;
    case KEY_DOWN:
    case 'j':
        if (s->notebook_cell < cells) s->notebook_cell++;
        gl_screen_show_cell(s);
        break;
    case '\r':
    case '\n':
    case KEY_ENTER: app_start_cell_job(s->notebook_cell); break;
    case 'a': app_start_cell_job(0); break;
    case 'r': app_restart_notebook(); break;
    case 'e': edit_in_editor(s->notebook_cell); break;
    case 'i': {
        app_push_ui("nb");
        lua_getfield(app.L, -1, "cells");
        lua_rawgeti(app.L, -1, s->notebook_cell);
        lua_getfield(app.L, -1, "source");
        app.edit_cell = s->notebook_cell;
        char prompt[32];
        snprintf(prompt, sizeof prompt, "cell %d> ", app.edit_cell);
        app_set_prompt(prompt);
        app_put_line(lua_tostring(app.L, -1) ? lua_tostring(app.L, -1) : "");
        lua_pop(app.L, 4);
        s->focus = -1;
        gl_screen_dirty(s, GL_PANE_NOTEBOOK);
        break;
    }
    default: break;
    }
}

/* While a notebook job runs, its cell is the selected one (unless the user
 * is moving around the notebook). */
void app_follow_running_cell(void)
{
    job *j = NULL;
    for (int i = 0; i < app.njobs; i++)
        if (app.jobs[i].notebook) j = &app.jobs[i];
    if (!j || app.scr.focus == GL_PANE_NOTEBOOK) return;
    lua_State *L = app.L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, j->ref);
    lua_getfield(L, -1, "cell");
    app_push_ui("nb");
    lua_getfield(L, -1, "cells");
    int n = (int)lua_rawlen(L, -1);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        bool same = lua_rawequal(L, -1, -4);
        lua_pop(L, 1);
        if (same && app.scr.notebook_cell != i) {
            app.scr.notebook_cell = i;
            gl_screen_show_cell(&app.scr);
        }
    }
    lua_pop(L, 4);
}
