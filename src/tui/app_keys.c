/* The workbench's keys (see app.c's top comment): curses keys to readline
 * (fed through a queue of bytes, drawn into the input window) or to the
 * focused pane; function keys; the lines readline hands back, and the `:`
 * commands among them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <readline/history.h>
#include <readline/readline.h>

#include "tui/app_internal.h"
#include "tui/repl.h"

/* ---- input lines ------------------------------------------------------------------------------- */

static const char help_text[] =
    "genlab workbench keys\n"
    "\n"
    "Enter        run the line (Lua; expressions print)     Alt-Enter  new line in the input\n"
    "Tab          complete globals, fields, methods         Up/Down    history\n"
    "Ctrl-C       stop the running job (or drop the line)   Ctrl-D, :q quit\n"
    "Space        pause/resume the job (empty line)         Ctrl-S     checkpoint the training run\n"
    "F2 F3 F4 F5  show/hide Loss, Samples, Model, Image     F6 F7 F8   Notebook, Transcript, Probe\n"
    "Ctrl-O, Esc  focus the next pane / back to the input   + -        grow/shrink the focused pane\n"
    "PgUp PgDn    scroll the transcript (or focused pane)   F1 or ?    this help\n"
    "\n"
    "Loss pane:      l log scale, z zoom to the last N steps, m next metric (loss, lr, tok/s, grad norm)\n"
    "Notebook pane:  Up/Down cell, Enter run, a run all, r restart, e edit in $EDITOR, i edit here\n"
    "Probe pane:     probe{model=, variants={...}} fills it; token log-prob >= -1 green, >= -3 yellow\n"
    "\n"
    ":help  :q  :open NOTEBOOK.lua  :run [N]  :all  :restart  :save  :clear  :stats (UI cost)\n"
    "help(x) documents genlab functions; show(x) puts a tensor image, model, text or probe in a pane\n"
    "\n"
    "any key closes this help";

void app_toggle_help(void)
{
    app.scr.help = app.scr.help ? NULL : (char *)help_text;
    if (!app.scr.help) gl_screen_layout(&app.scr);
    app.scr.input_dirty = true;
}

void app_set_prompt(const char *p)
{
    rl_set_prompt(p);
    free(app.scr.prompt);
    app.scr.prompt = strdup(p);
    app.scr.input_dirty = true;
}

/* The command a typed word names: a whole name, or a prefix (':' and at
 * least one letter) of exactly one name. NULL when unknown or ambiguous. */
static const char *command_named(const char *word, size_t n)
{
    static const char *const names[] = {":q", ":quit", ":help", ":open", ":run", ":all",
                                        ":restart", ":save", ":stats", ":clear"};
    const size_t count = sizeof names / sizeof names[0];
    const char *found = NULL;
    for (size_t i = 0; i < count; i++)
        if (strlen(names[i]) == n && strncmp(names[i], word, n) == 0) return names[i];
    if (n < 2) return NULL;
    for (size_t i = 0; i < count; i++) {
        if (strncmp(names[i], word, n) != 0) continue;
        if (found) return NULL;
        found = names[i];
    }
    return found;
}

void app_command(const char *line)
{
    char arg[1024] = "";
    const char *sp = strchr(line, ' ');
    size_t n = sp ? (size_t)(sp - line) : strlen(line);
    if (sp) snprintf(arg, sizeof arg, "%s", sp + strspn(sp, " "));
    const char *name = command_named(line, n);
    if (!name) {
        app_say(GL_TEXT_ERROR, "unknown or ambiguous command (:help lists them)");
    } else if (strcmp(name, ":q") == 0 || strcmp(name, ":quit") == 0) {
        app.quit = true;
    } else if (strcmp(name, ":help") == 0) {
        app_toggle_help();
    } else if (strcmp(name, ":open") == 0) {
        if (*arg)
            app_open_notebook(arg);
        else
            app_say(GL_TEXT_ERROR, ":open needs a file name");
    } else if (strcmp(name, ":run") == 0) {
        app_run_cell_command(*arg ? atoi(arg) : app.scr.notebook_cell);
    } else if (strcmp(name, ":all") == 0) {
        app_run_cell_command(0);
    } else if (strcmp(name, ":restart") == 0) {
        app_restart_notebook();
    } else if (strcmp(name, ":save") == 0) {
        app.save_pending = true;
        if (!app_top() || !app_top()->preempted) app_checkpoint_now();
    } else if (strcmp(name, ":stats") == 0) {
        double total = app.job_time + app.ui_time;
        app_info("UI cost while jobs ran: %.1f ms of %.1f s (%.2f%%), %ld frames (%.1f/s)", 1e3 * app.ui_time, total,
                 total > 0 ? 100 * app.ui_time / total : 0.0, app.frames, total > 0 ? (double)app.frames / total : 0.0);
    } else if (strcmp(name, ":clear") == 0) {
        gl_text_clear(&app.scr.transcript);
        gl_screen_dirty(&app.scr, GL_PANE_TRANSCRIPT);
    }
}

/* Runs a complete line, or keeps it for the next when the chunk goes on. */
void app_submit(const char *line)
{
    lua_State *L = app.L;
    char *src = app.chunk ? NULL : strdup(line);
    if (app.chunk) {
        size_t n = strlen(app.chunk) + strlen(line) + 2;
        src = malloc(n);
        if (src) snprintf(src, n, "%s\n%s", app.chunk, line);
        free(app.chunk);
        app.chunk = NULL;
    }
    if (!src) return;
    int c = gl_repl_compile(L, src);
    if (c == GL_CHUNK_MORE) {
        app.chunk = src;
        app_set_prompt("... ");
        return;
    }
    if (c == GL_CHUNK_READY) lua_pop(L, 1);
    if (c == GL_CHUNK_ERROR) lua_pop(L, 1);
    app_set_prompt("> ");
    app_start_repl_job(src);
    free(src);
}

static void on_line(char *line)
{
    if (!line) { /* Ctrl-D on an empty line */
        app.quit = true;
        return;
    }
    gl_repl_history_add(app.history, line);
    char echo[4096];
    snprintf(echo, sizeof echo, "%s%s", app.chunk ? "... " : "> ", line);
    app_drain_output();
    app.scr.transcript.open = false;
    gl_text_feed(&app.scr.transcript, echo, strlen(echo), GL_TEXT_INPUT);
    gl_text_feed(&app.scr.transcript, "\n", 1, GL_TEXT_INPUT);
    app.scr.panes[GL_PANE_TRANSCRIPT].scroll = 0;
    gl_screen_dirty(&app.scr, GL_PANE_TRANSCRIPT);
    if (app.edit_cell) {
        app_push_nb_method("set_source");
        lua_pushinteger(app.L, app.edit_cell);
        lua_pushstring(app.L, line);
        if (lua_pcall(app.L, 3, 0, 0) != LUA_OK) {
            app_say(GL_TEXT_ERROR, lua_tostring(app.L, -1));
            lua_pop(app.L, 1);
        } else {
            app_info("cell %d changed (Enter in the notebook runs it; :save-ing the file happens on quit)", app.edit_cell);
        }
        app.edit_cell = 0;
        app_set_prompt("> ");
        app_refresh_notebook(false);
    } else if (!app.chunk && line[0] == ':' && !app.in_hook) {
        app_command(line);
    } else if (app.in_hook || app.nqueue > 0 || app_must_wait()) {
        if (app.nqueue < (int)(sizeof app.queue / sizeof *app.queue)) {
            app.queue[app.nqueue++] = strdup(line);
            app_info("(runs when the job reaches its next step)");
        }
    } else {
        app_submit(line);
    }
    free(line);
}

/* ---- readline through a queue of bytes ----------------------------------------------------------- */

static int ui_getc(FILE *f)
{
    (void)f;
    if (app.key_at < app.nkeys) return app.keys[app.key_at++];
    return 0; /* never EOF: readline would take it for the end of input */
}

static void ui_redisplay(void)
{
    free(app.scr.line);
    app.scr.line = strdup(rl_line_buffer ? rl_line_buffer : "");
    app.scr.point = rl_point;
    app.scr.input_dirty = true;
}

static void ui_prep(int meta) { (void)meta; }
static void ui_deprep(void) {}

/* Tab with several matches: list them in the transcript. */
static void show_matches(char **matches, int n, int longest)
{
    (void)longest;
    char buf[2048];
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 1; i <= n && at < sizeof buf - 64; i++)
        at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%s", i > 1 ? "  " : "", matches[i]);
    if (at >= sizeof buf - 64) snprintf(buf + at, sizeof buf - at, "  ...");
    app_say(GL_TEXT_INFO, buf);
}

static int insert_newline(int count, int key)
{
    (void)count;
    (void)key;
    return rl_insert_text("\n") >= 0 ? 0 : 1;
}

static void feed(const char *bytes, size_t n)
{
    if (n > sizeof app.keys) return;
    memcpy(app.keys, bytes, n);
    app.nkeys = (int)n;
    app.key_at = 0;
    while (app.key_at < app.nkeys && !app.quit) rl_callback_read_char();
}

void app_put_line(const char *text)
{
    rl_replace_line(text, 0);
    rl_point = rl_end;
    ui_redisplay();
}

/* ---- keys ------------------------------------------------------------------------------------------ */

static void toggle_pane(gl_pane_id id)
{
    gl_pane *p = &app.scr.panes[id];
    if (id == GL_PANE_NOTEBOOK && !app_has_notebook()) {
        app_say(GL_TEXT_ERROR, "no notebook open (:open PATH)");
        return;
    }
    p->visible = !p->visible;
    if (!p->visible && app.scr.focus == (int)id) app.scr.focus = -1;
    if (id == GL_PANE_MODEL) app.model_stale = true;
    if (id == GL_PANE_LOSS) app.curves_stale = true;
    if (id == GL_PANE_PROBE) app.probe_stale = true;
    gl_screen_layout(&app.scr);
}

static void resize_focused(int dir)
{
    gl_screen *s = &app.scr;
    if (s->focus < 0) return;
    gl_pane *p = &s->panes[s->focus];
    p->weight += dir * 4;
    if (p->weight < 3) p->weight = 3;
    if (p->weight > 60) p->weight = 60;
    s->side_pct += (s->focus >= GL_PANE_LOSS ? dir : -dir) * 5;
    if (s->side_pct < 20) s->side_pct = 20;
    if (s->side_pct > 75) s->side_pct = 75;
    gl_screen_layout(s);
}

static void scroll_pane(gl_pane_id id, int by)
{
    gl_pane *p = &app.scr.panes[id];
    bool from_top = id == GL_PANE_MODEL || id == GL_PANE_NOTEBOOK || id == GL_PANE_PROBE;
    p->scroll += from_top ? -by : by;
    if (id == GL_PANE_PROBE) { /* no further than its last page */
        int last = app.scr.probe.n - (p->win ? getmaxy(p->win) - 1 : 1);
        if (p->scroll > last) p->scroll = last;
    }
    if (p->scroll < 0) p->scroll = 0;
    gl_screen_dirty(&app.scr, id);
}

/* Keys for a focused pane; false when the key is not one of its own. */
static bool pane_key(int key)
{
    gl_screen *s = &app.scr;
    int id = s->focus;
    if (key == '+' || key == '=') {
        resize_focused(1);
        return true;
    }
    if (key == '-') {
        resize_focused(-1);
        return true;
    }
    if (id == GL_PANE_NOTEBOOK && strchr("kjaeir\r\n", key ? key : 1)) {
        app_notebook_key(key);
        return true;
    }
    if (id == GL_PANE_NOTEBOOK && (key == KEY_UP || key == KEY_DOWN || key == KEY_ENTER)) {
        app_notebook_key(key);
        return true;
    }
    if (id == GL_PANE_LOSS && (key == 'l' || key == 'z' || key == 'm')) {
        if (key == 'l') s->log_y = !s->log_y;
        if (key == 'z') s->last_n = s->last_n == 0 ? 1000 : s->last_n == 1000 ? 200 : s->last_n == 200 ? 50 : 0;
        if (key == 'm') app_next_metric();
        gl_screen_dirty(s, GL_PANE_LOSS);
        return true;
    }
    if (key == KEY_UP || key == KEY_DOWN) {
        scroll_pane((gl_pane_id)id, key == KEY_UP ? 1 : -1);
        return true;
    }
    return false;
}

static void readline_key(int key)
{
    static const struct {
        int key;
        const char *seq;
    } map[] = {{KEY_UP, "\033[A"},    {KEY_DOWN, "\033[B"},   {KEY_RIGHT, "\033[C"}, {KEY_LEFT, "\033[D"},
               {KEY_HOME, "\033[H"},  {KEY_END, "\033[F"},    {KEY_DC, "\033[3~"},  {KEY_BACKSPACE, "\177"},
               {KEY_ENTER, "\r"}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (map[i].key == key) feed(map[i].seq, strlen(map[i].seq));
}

static bool line_empty(void) { return !rl_line_buffer || rl_line_buffer[0] == '\0'; }

static void toggle_pause(void)
{
    job *j = app_top();
    j->paused = !j->paused;
    app_info("%s %s", j->paused ? "paused:" : "resumed:", j->label);
    app.scr.status_dirty = true;
}

/* A function key or other curses key code. */
static void special_key(int key)
{
    gl_screen *s = &app.scr;
    if (key == KEY_RESIZE) {
        gl_screen_layout(s);
        if (app_has_notebook()) gl_screen_show_cell(s);
        return;
    }
    if (key == KEY_F(1)) {
        app_toggle_help();
        return;
    }
    static const gl_pane_id fkeys[] = {GL_PANE_LOSS,     GL_PANE_SAMPLES,    GL_PANE_MODEL, GL_PANE_IMAGE,
                                       GL_PANE_NOTEBOOK, GL_PANE_TRANSCRIPT, GL_PANE_PROBE};
    for (int i = 0; i < (int)(sizeof fkeys / sizeof *fkeys); i++)
        if (key == KEY_F(2 + i)) {
            toggle_pane(fkeys[i]);
            return;
        }
    if (key == KEY_PPAGE || key == KEY_NPAGE) {
        int id = s->focus >= 0 ? s->focus : GL_PANE_TRANSCRIPT;
        int page = s->panes[id].win ? getmaxy(s->panes[id].win) - 2 : 10;
        scroll_pane((gl_pane_id)id, key == KEY_PPAGE ? page : -page);
        return;
    }
    if (s->focus >= 0 && pane_key(key)) return;
    readline_key(key);
}

static void type_key(wint_t wc);

static void key(wint_t wc)
{
    gl_screen *s = &app.scr;
    if (s->help) { /* any key closes the help */
        app_toggle_help();
        return;
    }
    if (wc == 15) { /* Ctrl-O */
        s->focus = gl_screen_next_focus(s, s->focus);
        gl_screen_layout(s);
        return;
    }
    if (wc == 27 && s->focus >= 0) {
        s->focus = -1;
        gl_screen_layout(s);
        return;
    }
    if (wc == 19) { /* Ctrl-S */
        app.save_pending = true;
        if (!app_top() || !app_top()->preempted) app_checkpoint_now();
        return;
    }
    if (wc == ' ' && app_top() && (line_empty() || s->focus >= 0)) {
        toggle_pause();
        return;
    }
    if (wc == '?' && line_empty() && s->focus < 0) {
        app_toggle_help();
        return;
    }
    if (s->focus >= 0) {
        if (pane_key((int)wc)) return;
        s->focus = -1; /* typing goes to the input line */
        gl_screen_layout(s);
    }
    type_key(wc);
}

/* A key typed into the input line. */
static void type_key(wint_t wc)
{
    char buf[MB_LEN_MAX];
    mbstate_t st;
    memset(&st, 0, sizeof st);
    size_t n = wcrtomb(buf, (wchar_t)wc, &st);
    if (n != (size_t)-1) feed(buf, n);
}

/* Keys readline can take from inside a running job: they edit the input
 * line, or enter it into the queue of lines that run once the job yields;
 * none runs Lua or touches jobs and panes. */
static bool edits_only(wint_t wc)
{
    const gl_screen *s = &app.scr;
    if (s->help || s->focus >= 0 || app.edit_cell) return false;
    if (wc == ' ' && line_empty()) return false; /* pauses the job */
    if (wc == '?' && line_empty()) return false; /* opens the help */
    if (wc >= 32) return true;                   /* characters; 127 is backspace */
    switch (wc) {
    case '\r': case '\n': /* the line is queued (on_line), as any line entered while a job computes */
    case 1: case 2: case 5: case 6: case 8: case 11: case 21: case 23: /* C-a C-b C-e C-f C-h C-k C-u C-w */
        return true;
    default:
        return false;
    }
}

/* Called from inside ops while a job runs (gl_interrupt_set_hook), so what
 * is typed during a long training step echoes at once. Editing keys and
 * Enter go to readline now; the first key that could run something (Tab,
 * pane and function keys, Space on an empty line...) and every key after it
 * wait in app.later for the loop, which handles them in order. */
void app_echo_during_job(void *unused)
{
    (void)unused;
    if (!app_running || app.quit) return;
    wint_t wc;
    int r;
    while ((r = wget_wch(app.scr.input, &wc)) != ERR) {
        bool code = r == KEY_CODE_YES;
        if (app.nlater == 0 && !code && edits_only(wc)) {
            app.in_hook = true;
            type_key(wc);
            app.in_hook = false;
        } else if (app.nlater < (int)(sizeof app.later / sizeof *app.later)) {
            app.later[app.nlater].wc = wc;
            app.later[app.nlater++].code = code;
        }
    }
    if (app.scr.input_dirty) gl_screen_draw_input(&app.scr);
}

void app_read_keys(void)
{
    for (int i = 0; i < app.nlater && !app.quit; i++)
        if (app.later[i].code)
            special_key((int)app.later[i].wc);
        else
            key(app.later[i].wc);
    app.nlater = 0;
    wint_t wc;
    int r;
    while (!app.quit && (r = wget_wch(app.scr.input, &wc)) != ERR) {
        if (r == KEY_CODE_YES)
            special_key((int)wc);
        else
            key(wc);
    }
}

/* Ctrl-C with no job: the line being typed (or the unfinished chunk, or the
 * cell being edited) is abandoned. */
void app_line_reset(void)
{
    free(app.chunk);
    app.chunk = NULL;
    app.edit_cell = 0;
    app_set_prompt("> ");
    rl_free_line_state();
    app_put_line("");
}

void app_setup_readline(void)
{
    rl_readline_name = "genlab";
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    rl_change_environment = 0;
    rl_getc_function = ui_getc;
    rl_redisplay_function = ui_redisplay;
    rl_prep_term_function = ui_prep;
    rl_deprep_term_function = ui_deprep;
    rl_completion_display_matches_hook = show_matches;
    rl_outstream = fopen("/dev/null", "w");
    rl_instream = stdin;
    gl_repl_completion_install(app.L);
    stifle_history(GL_REPL_HISTORY_MAX);
    app.history = gl_repl_history_open();
    rl_callback_handler_install("> ", on_line);
    rl_variable_bind("bell-style", "none");
    rl_bind_keyseq("\\e\\r", insert_newline);
    app_set_prompt("> ");
}

