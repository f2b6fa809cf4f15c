/* The workbench's private parts, shared by its files (see app.c's top
 * comment for the whole picture): app.c (set-up, the loop, output capture,
 * the Lua helper), app_jobs.c (jobs, slices, Ctrl-C, the queue of lines),
 * app_keys.c (keys, readline glue, commands), app_views.c (refreshing the
 * panes from Lua state) and app_notebook.c (the notebook's commands). */
#ifndef GL_TUI_APP_INTERNAL_H
#define GL_TUI_APP_INTERNAL_H

#include <lua.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <wchar.h>

#include "tui/panes.h"

#define SLICE 0.025       /* seconds a job runs before the UI looks at the keys */
#define FRAME 0.100       /* panes repaint at most this often */
#define IDLE_WAIT_MS 50   /* poll timeout with nothing to run */
#define MAX_JOBS 8
#define HOOK_COUNT 1000   /* VM instructions between looks at the clock */

typedef struct {
    lua_State *co; /* the thread resumed (for a notebook job: the notebook's coroutine) */
    int ref;       /* REPL job: the thread; notebook job: the job table */
    bool notebook;
    char label[64];
    bool ran, preempted, paused, stopping;
    double started;
} job;

typedef struct {
    char *run, *name;
    double *x, *y;
    int64_t n, cap;
} cached_series;

typedef struct {
    lua_State *L;
    int ui; /* registry ref of the ui helper table */
    gl_screen scr;
    job jobs[MAX_JOBS];
    int njobs;
    char *chunk;       /* lines of an unfinished chunk */
    char *queue[16];   /* lines entered while the top job was preempted */
    int nqueue;
    char *history;
    int out_fd, saved_out, saved_err;
    bool quit, save_pending;
    int edit_cell;     /* cell whose source is in the input line, or 0 */
    unsigned char keys[256];
    int nkeys, key_at;
    struct {
        wint_t wc;
        bool code; /* a curses key code, not a character */
    } later[256];  /* keys read during a job that must wait for the loop */
    int nlater;
    bool in_hook;  /* keys are being handled from inside a running job's op */
    double last_frame, last_model, slice_end;
    lua_Integer metrics_version, nb_version;
    bool model_stale, curves_stale;
    cached_series cache[32];
    int ncache;
    int metric;
    bool probe_stale;  /* the Probe pane's text must be made again (new result, new width) */
    int probe_width;   /* the width it was made for */
    double job_time, ui_time; /* while a job runs: seconds in it and in the UI around it */
    long frames;
} app_t;

extern app_t app;
extern lua_State *volatile app_running;        /* the thread in a slice, for the signal handler */
extern volatile sig_atomic_t app_sigint_seen;  /* set by the SIGINT handler */

/* app.c */
double app_now(void);
job *app_top(void);
void app_say(gl_text_kind kind, const char *msg);
void app_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void app_drain_output(void);
void app_capture_pause(bool pause);
void app_push_ui(const char *name);
bool app_call_ui(const char *name, int nargs, int nres);

/* app_jobs.c */
void app_on_sigint(int sig);
int app_ui_repl_yield(lua_State *L);
void app_start_repl_job(const char *src);
void app_start_cell_job(int cell);
void app_checkpoint_now(void);
bool app_must_wait(void);
void app_run_jobs(void);
void app_handle_sigint(void);

/* app_keys.c */
void app_setup_readline(void);
void app_set_prompt(const char *p);
void app_put_line(const char *text);
void app_line_reset(void);
void app_toggle_help(void);
void app_command(const char *line);
void app_submit(const char *line);
void app_read_keys(void);
void app_echo_during_job(void *unused);

/* app_views.c */
int app_ui_sample_begin(lua_State *L);
int app_ui_sample(lua_State *L);
int app_ui_show_model(lua_State *L);
int app_ui_image(lua_State *L);
int app_ui_show_probe(lua_State *L);
void app_next_metric(void);
void app_refresh_status(void);
void app_refresh_views(void);
void app_views_free(void);

/* app_notebook.c */
bool app_has_notebook(void);
void app_push_nb_method(const char *method);
void app_refresh_notebook(bool force);
bool app_open_notebook(const char *path);
void app_run_cell_command(int cell);
void app_restart_notebook(void);
void app_nb_save_outputs(void);
void app_save_notebook(void);
void app_notebook_key(int key);
void app_follow_running_cell(void);

#endif
