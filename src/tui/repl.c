/* The line REPL, after Lua's lua.c and torch's trepl.
 *
 * Each input is tried as `return <input>` first, so expressions print their
 * values (tab-separated, through tostring) and the first is kept in `_`; then
 * as statements. A syntax error at <eof> asks for another line ("... ").
 * On a terminal, GNU readline reads lines through its callback interface
 * (pselect on stdin, as the TUI will), with history in $GENLAB_HISTORY or
 * ~/.genlab_history and Tab completion of Lua names. From a pipe, lines are
 * read plainly and only results and errors are printed, so
 * `echo '1+1' | genlab repl` prints 2; the exit status is then 1 when any
 * input failed.
 *
 * Ctrl-C stops the computation, not the session. While user code runs, the
 * SIGINT handler requests an interrupt that C kernels poll (core/interrupt.h)
 * and sets a Lua hook that raises "interrupted!" at the next Lua step, so a
 * pure-Lua loop stops too. At the prompt SIGINT is blocked except inside
 * pselect, and Ctrl-C there abandons the line being typed, as in a shell. */
#include "tui/repl.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>
#include <readline/history.h>
#include <readline/readline.h>

#include "core/interrupt.h"
#include "lua/binding.h"
#include "lua/runtime.h"

#define CHUNKNAME "=stdin"

typedef struct {
    lua_State *L;
    bool tty;
    char *history;          /* history file, or NULL for none */
    char *paste;            /* lines of a multi-line paste not yet handed out */
    char *paste_next;       /* the next of them, inside paste */
    sigset_t guarded;       /* SIGINT and SIGWINCH: blocked at the prompt on a terminal */
    sigset_t open;          /* the mask while waiting for keys or running code */
    struct sigaction saved; /* SIGINT's action before running code from a pipe */
    bool failed;            /* some input raised an error */
} repl;

enum { INPUT_LINE, INPUT_EOF, INPUT_CANCEL };

static lua_State *volatile running; /* the state running user code, or NULL */
static volatile sig_atomic_t sigint_at_prompt, sigwinch_seen;

/* ---- Ctrl-C ---------------------------------------------------------------- */

static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void on_signal(int sig)
{
    if (sig == SIGWINCH) {
        sigwinch_seen = 1;
        return;
    }
    lua_State *L = running;
    if (L) { /* as lua.c does: lua_sethook is safe to call from a signal handler */
        gl_interrupt_request();
        lua_sethook(L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
    } else {
        sigint_at_prompt = 1;
    }
}

static void install_handler(int sig, struct sigaction *saved)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, saved);
}

static void run_begin(repl *r)
{
    gl_interrupt_clear();
    running = r->L;
    if (r->tty)
        sigprocmask(SIG_SETMASK, &r->open, NULL);
    else /* reading a pipe, Ctrl-C keeps its default action: it ends the program */
        install_handler(SIGINT, &r->saved);
}

/* After user code: no hook, no pending interrupt for the next command. */
static void run_end(repl *r)
{
    if (r->tty)
        sigprocmask(SIG_BLOCK, &r->guarded, NULL);
    else
        sigaction(SIGINT, &r->saved, NULL);
    running = NULL;
    lua_sethook(r->L, NULL, 0, 0);
    gl_interrupt_clear();
}

/* ---- reading lines ------------------------------------------------------------- */

static char *tty_line;
static bool tty_done;

static void on_tty_line(char *line)
{
    tty_line = line;
    tty_done = true;
    rl_callback_handler_remove();
}

/* Ctrl-C at the prompt: show ^C after the text, drop it, start afresh. */
static void cancel_tty_line(void)
{
    rl_free_line_state();
    rl_callback_sigcleanup();
    rl_point = rl_end;
    rl_redisplay();
    rl_echo_signal_char(SIGINT);
    rl_crlf();
    rl_replace_line("", 0);
    rl_callback_handler_remove();
    fflush(rl_outstream);
}

static int read_tty(repl *r, const char *prompt, char **line)
{
    tty_line = NULL;
    tty_done = false;
    rl_callback_handler_install(prompt, on_tty_line);
    int fd = fileno(rl_instream);
    while (!tty_done) {
        if (sigwinch_seen) {
            sigwinch_seen = 0;
            rl_resize_terminal();
        }
        fd_set fds;
        FD_ZERO(&fds);
        FD_SET(fd, &fds);
        if (pselect(fd + 1, &fds, NULL, NULL, NULL, &r->open) < 0) {
            if (errno != EINTR) {
                rl_callback_handler_remove();
                return INPUT_EOF;
            }
            if (sigint_at_prompt) {
                sigint_at_prompt = 0;
                cancel_tty_line();
                return INPUT_CANCEL;
            }
            continue;
        }
        rl_callback_read_char();
    }
    if (!tty_line) return INPUT_EOF;
    *line = tty_line;
    return INPUT_LINE;
}

static int read_pipe(char **line)
{
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n = getline(&buf, &cap, stdin);
    if (n < 0) {
        free(buf);
        return INPUT_EOF;
    }
    if (n > 0 && buf[n - 1] == '\n') buf[n - 1] = '\0';
    *line = buf;
    return INPUT_LINE;
}

/* One line into *line (malloc'd). A paste of several lines arrives from
 * readline as one string; it is handed out a line at a time, as if typed. */
static int read_line(repl *r, const char *prompt, char **line)
{
    if (!r->paste) {
        fflush(stdout);
        int st = r->tty ? read_tty(r, prompt, line) : read_pipe(line);
        if (st != INPUT_LINE || !strchr(*line, '\n')) return st;
        r->paste = r->paste_next = *line;
    }
    char *s = r->paste_next, *nl = strchr(s, '\n');
    size_t len = nl ? (size_t)(nl - s) : strlen(s);
    *line = strndup(s, len);
    r->paste_next = nl ? nl + 1 : NULL;
    if (!*line || !nl || !nl[1]) { /* a trailing newline ends the paste */
        free(r->paste);
        r->paste = r->paste_next = NULL;
    }
    return *line ? INPUT_LINE : INPUT_EOF;
}

/* ---- history ----------------------------------------------------------------------- */

/* $GENLAB_HISTORY (empty: no history file) or ~/.genlab_history; created so
 * that each line can be appended as it is entered, which keeps it when the
 * session is killed. */
char *gl_repl_history_open(void)
{
    const char *env = getenv("GENLAB_HISTORY"), *home = getenv("HOME");
    char *path = NULL;
    if (env) {
        if (!*env) return NULL;
        path = strdup(env);
    } else if (home && *home) {
        size_t n = strlen(home) + sizeof "/.genlab_history";
        path = malloc(n);
        if (path) snprintf(path, n, "%s/.genlab_history", home);
    }
    if (!path) return NULL;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0) {
        fprintf(stderr, "genlab: history will not be saved: %s: %s\n", path, strerror(errno));
        free(path);
        return NULL;
    }
    close(fd);
    read_history(path);
    return path;
}

void gl_repl_history_add(const char *path, const char *line)
{
    if (line[strspn(line, " \t")] == '\0') return;
    HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
    if (last && strcmp(last->line, line) == 0) return;
    add_history(line);
    if (path) append_history(1, path);
}

static void remember(repl *r, const char *line)
{
    if (r->tty) gl_repl_history_add(r->history, line);
}

/* ---- completion of Lua names ------------------------------------------------------ */

static lua_State *completion_L;

static bool is_name(const char *s)
{
    if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return false;
    for (s++; *s; s++)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

/* Replaces the value at the top with the table where a lookup in it goes
 * on: a tensor's methods, or the __index table of its metatable. Runs no
 * metamethods. Returns false, with nil at the top, when there is none. */
static bool next_scope(lua_State *L, bool first)
{
    if (first && luaL_testudata(L, -1, GL_LUA_TENSOR)) {
        lua_pop(L, 1);
        lua_getfield(L, LUA_REGISTRYINDEX, GL_LUA_METHODS);
        return true;
    }
    if (lua_getmetatable(L, -1)) {
        lua_pushliteral(L, "__index");
        lua_rawget(L, -2);
        lua_remove(L, -2);
        lua_remove(L, -2);
        if (lua_istable(L, -1)) return true;
    }
    lua_pop(L, 1);
    lua_pushnil(L);
    return false;
}

/* Replaces the value at the top with its field `name`, or nil. */
static void get_field(lua_State *L, const char *name, size_t len)
{
    for (int depth = 0; depth < 8; depth++) {
        if (lua_istable(L, -1)) {
            lua_pushlstring(L, name, len);
            lua_rawget(L, -2);
            if (!lua_isnil(L, -1)) {
                lua_remove(L, -2);
                return;
            }
            lua_pop(L, 1);
        }
        if (!next_scope(L, depth == 0)) return;
    }
    lua_pop(L, 1);
    lua_pushnil(L);
}

/* Appends prefix..key to the array at out for each name key of the value at
 * the top (and of the scopes behind it) that starts with part; pops the value. */
static void add_fields(lua_State *L, int out, const char *prefix, const char *part)
{
    size_t n = strlen(part);
    for (int depth = 0; depth < 8; depth++) {
        if (lua_istable(L, -1)) {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                lua_pop(L, 1);
                const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
                if (k && strncmp(k, part, n) == 0 && is_name(k)) {
                    lua_pushfstring(L, "%s%s", prefix, k);
                    lua_rawseti(L, out, (lua_Integer)lua_rawlen(L, out) + 1);
                }
            }
        }
        if (!next_scope(L, depth == 0)) break;
    }
    lua_pop(L, 1);
}

/* Where completion starts: the table in the registry under GL_REPL_SCOPE
 * (the workbench sets a notebook's globals there), else the globals. */
static void push_scope(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, GL_REPL_SCOPE) == LUA_TTABLE) return;
    lua_pop(L, 1);
    lua_pushglobaltable(L);
}

/* complete(text) -> array of completions of a name path like `gl.ze` or `t:su`. */
static int l_complete(lua_State *L)
{
    static const char *const keywords[] = {"and",   "break", "do",     "else", "elseif", "end",   "false",
                                           "for",   "function", "goto", "if", "in",     "local", "nil",
                                           "not",   "or",    "repeat", "return", "then", "true", "until",
                                           "while", NULL};
    const char *text = luaL_checkstring(L, 1);
    lua_newtable(L);
    int out = lua_gettop(L);
    const char *sep = NULL;
    for (const char *p = text; *p; p++)
        if (*p == '.' || *p == ':') sep = p;
    if (!sep) {
        for (const char *const *k = keywords; *k; k++)
            if (strncmp(*k, text, strlen(text)) == 0) {
                lua_pushstring(L, *k);
                lua_rawseti(L, out, (lua_Integer)lua_rawlen(L, out) + 1);
            }
        push_scope(L);
        add_fields(L, out, "", text);
        return 1;
    }
    const char *prefix = lua_pushlstring(L, text, (size_t)(sep - text) + 1);
    push_scope(L);
    for (const char *p = text; p < sep;) {
        size_t len = strcspn(p, ".:");
        get_field(L, p, len);
        p += len + 1;
    }
    add_fields(L, out, prefix, sep + 1);
    lua_settop(L, out);
    return 1;
}

static char *complete_next(const char *text, int state)
{
    static char **list;
    static size_t n, i;
    if (state == 0) {
        while (i < n) free(list[i++]);
        free(list);
        list = NULL;
        n = i = 0;
        lua_State *L = completion_L;
        lua_pushcfunction(L, l_complete);
        lua_pushstring(L, text);
        if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
            size_t count = (size_t)lua_rawlen(L, -1);
            list = calloc(count ? count : 1, sizeof *list);
            for (size_t k = 0; list && k < count; k++) {
                lua_rawgeti(L, -1, (lua_Integer)k + 1);
                char *s = strdup(lua_tostring(L, -1));
                if (s) list[n++] = s;
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    return i < n ? list[i++] : NULL; /* readline frees what it is given */
}

static char **complete(const char *text, int start, int end)
{
    (void)start;
    (void)end;
    rl_attempted_completion_over = 1; /* no file names */
    rl_completion_append_character = '\0';
    return rl_completion_matches(text, complete_next);
}

void gl_repl_completion_install(lua_State *L)
{
    rl_attempted_completion_function = complete;
    rl_completer_word_break_characters = " \t\n\"'`@$><=;|&{}()+-*/%^~#,[]";
    completion_L = L;
}

/* ---- evaluation ------------------------------------------------------------------- */

/* A syntax error at the end of the input means more lines may complete it. */
static bool incomplete(lua_State *L, int status)
{
    static const char mark[] = "<eof>";
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    return status == LUA_ERRSYNTAX && len >= sizeof mark - 1 && strcmp(msg + len - (sizeof mark - 1), mark) == 0;
}

/* Compiles src as `return src` or else as statements. Pushes the function
 * (READY) or the statement form's error (ERROR); MORE pushes nothing. */
int gl_repl_compile(lua_State *L, const char *src)
{
    const char *code = lua_pushfstring(L, "return %s", src);
    int st = luaL_loadbuffer(L, code, strlen(code), CHUNKNAME);
    lua_remove(L, -2);
    if (st == LUA_OK) return GL_CHUNK_READY;
    bool more = incomplete(L, st);
    lua_pop(L, 1);
    st = luaL_loadbuffer(L, src, strlen(src), CHUNKNAME);
    if (st == LUA_OK) return GL_CHUNK_READY;
    if (!more && !incomplete(L, st)) return GL_CHUNK_ERROR;
    lua_pop(L, 1);
    return GL_CHUNK_MORE;
}

static void report(repl *r)
{
    const char *msg = lua_tostring(r->L, -1);
    fflush(stdout);
    fprintf(stderr, "%s\n", msg ? msg : "(error object is not a string)");
    fflush(stderr);
    lua_pop(r->L, 1);
    r->failed = true;
}

/* show(...): keeps the first value in `_` and prints them all tab-separated. */
int gl_repl_show(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, 1);
    lua_setglobal(L, "_");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, '\n');
    luaL_pushresult(&b);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    fwrite(s, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* Runs the function at the top; prints its results unless all are nil. */
static void run_chunk(repl *r)
{
    lua_State *L = r->L;
    int base = lua_gettop(L);
    lua_pushcfunction(L, gl_runtime_traceback);
    lua_insert(L, base);
    run_begin(r);
    int status = lua_pcall(L, 0, LUA_MULTRET, base);
    run_end(r);
    lua_remove(L, base);
    if (status != LUA_OK) {
        report(r);
        return;
    }
    int n = lua_gettop(L) - base + 1;
    bool any = false;
    for (int i = base; i < base + n; i++) any = any || !lua_isnil(L, i);
    if (!any) {
        lua_settop(L, base - 1);
        return;
    }
    lua_pushcfunction(L, gl_repl_show);
    lua_insert(L, base);
    if (lua_pcall(L, n, 0, 0) != LUA_OK) report(r);
}

/* Reads one chunk (one or more lines), then compiles and runs it. Returns
 * false at the end of input. */
static bool do_chunk(repl *r)
{
    lua_State *L = r->L;
    char *line;
    int st = read_line(r, "> ", &line);
    if (st != INPUT_LINE) return st == INPUT_CANCEL;
    remember(r, line);
    lua_pushstring(L, line);
    free(line);
    for (;;) {
        const char *src = lua_tostring(L, -1);
        int c = gl_repl_compile(L, src);
        if (c == GL_CHUNK_READY) {
            lua_remove(L, -2);
            run_chunk(r);
            return true;
        }
        if (c == GL_CHUNK_ERROR) {
            lua_remove(L, -2);
            report(r);
            return true;
        }
        st = read_line(r, "... ", &line);
        if (st == INPUT_CANCEL) { /* Ctrl-C drops the whole unfinished chunk */
            lua_pop(L, 1);
            return true;
        }
        if (st == INPUT_EOF) { /* say why the unfinished chunk was not run */
            luaL_loadbuffer(L, src, strlen(src), CHUNKNAME);
            lua_remove(L, -2);
            report(r);
            return false;
        }
        remember(r, line);
        lua_pushfstring(L, "%s\n%s", src, line);
        free(line);
        lua_remove(L, -2);
    }
}

/* ---- help(x) ------------------------------------------------------------------------ */

/* Short documentation of the genlab functions people reach for first;
 * genlab-lua(3) has the whole surface. */
static const char *const docs[][2] = {
    {"gl.tensor", "gl.tensor(values [, {dtype=}]) -> tensor from nested Lua tables"},
    {"gl.zeros", "gl.zeros(shape...) / gl.ones / gl.full(shape, v) -> new f32 tensor"},
    {"gl.randn", "gl.randn(shape...) -> normal(0,1) f32 tensor; gl.rand: uniform [0,1)"},
    {"gl.arange", "gl.arange([start,] stop [, step]) -> 1-D tensor"},
    {"gl.matmul", "gl.matmul(a, b) or a:matmul(b) -> matrix product (batched, broadcast)"},
    {"gl.softmax", "gl.softmax(x, dim) -> softmax along dim (1-based, -1 = last)"},
    {"gl.cross_entropy", "gl.cross_entropy(logits [N,C], targets [N] (0-based ids)) -> mean loss"},
    {"gl.no_grad", "gl.no_grad(fn, ...) -> fn's results, computed without recording the tape"},
    {"gl.backward", "loss:backward() -> fills .grad of the leaves that require grad"},
    {"gl.seed", "gl.seed(n) -> seeds the one random stream (parameters, data, dropout, sampling)"},
    {"gl.save", "gl.save(path, {name = tensor, ...}) -> writes a safetensors file atomically"},
    {"gl.load", "gl.load(path) -> {name = tensor, ...} from a safetensors file"},
    {"gl.memory", "gl.memory() -> {live = bytes, peak = bytes} of tensor storage"},
    {"gl.threads", "gl.threads([n]) -> number of OpenMP/BLAS threads (sets it when n is given)"},
    {"gl.clock", "gl.clock() -> monotonic wall-clock seconds"},
    {"gl.generate", "gl.generate(model, prompt, {max_new, temperature, top_k, top_p, stop, on_token}) -> text, info"},
    {"gl.models.gpt", "gl.models.gpt{vocab, n_layer, n_head, n_embd, block [, arch, dropout]} -> GPT model"},
    {"gl.models.load", "gl.models.load(path) -> a model from safetensors / HF dir / llama2.c checkpoint"},
    {"gl.nn.Linear", "gl.nn.Linear{in_features, out_features [, bias]} -> module"},
    {"gl.nn.Sequential", "gl.nn.Sequential{m1, m2, ...} -> module applying each in turn"},
    {"gl.nn.Module", "gl.nn.Module{name, init = fn(self, ...), forward = fn(self, ...)} -> a Lua module class"},
    {"gl.optim.adamw", "gl.optim.adamw(model or params, {lr, betas, weight_decay}) -> optimizer (:step, :zero_grad)"},
    {"gl.optim.sgd", "gl.optim.sgd(params, {lr, momentum, weight_decay}) -> optimizer"},
    {"gl.data.text", "gl.data.text(path, {tokenizer = \"char\", block, batch, split}) -> dataset (:batch(split))"},
    {"gl.train", "gl.train{model, data, lr, max_steps, eval_every, sample_every, checkpoint} -> run; run:step(n), run:fit(), run:save(path)"},
    {"gl.tokenizer.char", "gl.tokenizer.char(text) -> character tokenizer (:encode, :decode)"},
    {"gl.checkpoint.save", "gl.checkpoint.save(path, {model, optim, step, extra}) -> atomic checkpoint"},
    {"gl.metrics", "gl.metrics.runs(), .names(run), .series(run, name) -> xs, ys: what the Trainer logged"},
    {"gl.notebook.open", "gl.notebook.open(path) -> notebook: nb.cells, nb:run(i), nb:run_all(), nb:save()"},
    {"help", "help(x) -> this text for a genlab function or table; help() lists the topics"},
    {NULL, NULL},
};

static const char *doc_of(const char *name)
{
    for (int i = 0; docs[i][0]; i++)
        if (strcmp(docs[i][0], name) == 0) return docs[i][1];
    return NULL;
}

/* The dotted name under which the value at idx is found in gl or one of its
 * tables, pushed; nil when there is none. */
static void push_name_of(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    for (int i = 0; docs[i][0]; i++) {
        if (luaL_loadstring(L, lua_pushfstring(L, "return %s", docs[i][0])) != LUA_OK) {
            lua_pop(L, 2);
            continue;
        }
        lua_remove(L, -2);
        if (lua_pcall(L, 0, 1, 0) == LUA_OK && lua_rawequal(L, -1, idx)) {
            lua_pop(L, 1);
            lua_pushstring(L, docs[i][0]);
            return;
        }
        lua_pop(L, 1);
    }
    lua_pushnil(L);
}

/* help([x]): prints the short documentation of x (a value or its name). */
static int l_help(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addstring(&b, "help(x) documents these (genlab-lua(3) has everything):\n");
        for (int i = 0; docs[i][0]; i++) {
            luaL_addstring(&b, i % 6 ? "  " : (i ? "\n  " : "  "));
            luaL_addstring(&b, docs[i][0]);
        }
        luaL_pushresult(&b);
    } else {
        if (lua_type(L, 1) == LUA_TSTRING) {
            const char *n = lua_tostring(L, 1);
            lua_pushstring(L, strncmp(n, "gl.", 3) && !doc_of(n) ? lua_pushfstring(L, "gl.%s", n) : n);
        } else {
            push_name_of(L, 1);
        }
        const char *name = lua_tostring(L, -1), *doc = name ? doc_of(name) : NULL;
        if (doc)
            lua_pushstring(L, doc);
        else
            lua_pushfstring(L, "help: no entry for %s (try help(), or man genlab-lua)", luaL_tolstring(L, 1, NULL));
    }
    puts(lua_tostring(L, -1));
    fflush(stdout);
    return 0;
}

void gl_repl_help_install(lua_State *L)
{
    lua_pushcfunction(L, l_help);
    lua_setglobal(L, "help");
}

/* ---- set-up ------------------------------------------------------------------------- */

static void banner(lua_State *L)
{
    const char *info = "genlab";
    if (luaL_loadstring(L, "return gl.system_info()") == LUA_OK && lua_pcall(L, 0, 1, 0) == LUA_OK &&
        lua_isstring(L, -1))
        info = lua_tostring(L, -1);
    printf("%s\n%s; Ctrl-C interrupts, Ctrl-D quits\n", info, LUA_RELEASE);
    lua_pop(L, 1);
}

static void setup_tty(repl *r)
{
    rl_readline_name = "genlab";
    rl_catch_signals = 0; /* Ctrl-C and resizes are handled here, around pselect */
    rl_catch_sigwinch = 0;
    gl_repl_completion_install(r->L);
    stifle_history(GL_REPL_HISTORY_MAX);
    r->history = gl_repl_history_open();
    sigemptyset(&r->guarded);
    sigaddset(&r->guarded, SIGINT);
    sigaddset(&r->guarded, SIGWINCH);
    sigprocmask(SIG_BLOCK, &r->guarded, &r->open);
    sigdelset(&r->open, SIGINT);
    sigdelset(&r->open, SIGWINCH);
    install_handler(SIGINT, NULL);
    install_handler(SIGWINCH, NULL);
}

int gl_repl_main(int argc, char **argv)
{
    if (argc > 0 && argv[0][0] == '-') {
        fprintf(stderr, "usage: genlab repl [FILE.lua [ARGS]]\n");
        return 2;
    }
    repl r = {.L = gl_runtime_new(), .tty = isatty(STDIN_FILENO)};
    if (!r.L) {
        fprintf(stderr, "genlab: cannot create Lua state\n");
        return 1;
    }
    if (argc > 0)
        gl_runtime_set_args(r.L, argv[0], argc - 1, argv + 1);
    else
        gl_runtime_set_args(r.L, "genlab", 0, NULL);
    if (r.tty) setup_tty(&r);
    r.failed = gl_runtime_dostring(r.L, "gl = require 'genlab'", "=repl") != 0;
    gl_repl_help_install(r.L);
    if (r.tty) banner(r.L);
    if (argc > 0) { /* like lua -i: run the file, then stay */
        run_begin(&r);
        r.failed = gl_runtime_dofile(r.L, argv[0], 0) != 0 || r.failed;
        run_end(&r);
    }
    while (do_chunk(&r)) {
    }
    if (r.tty) {
        putchar('\n');
        if (r.history) history_truncate_file(r.history, GL_REPL_HISTORY_MAX);
        free(r.history);
    }
    lua_close(r.L);
    return r.tty || !r.failed ? 0 : 1;
}
