/* The genlab command. Exit codes: 0 success, 1 script error, 2 usage. */
#include <stdbool.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "lua/runtime.h"
#include "serve/serve.h"
#include "tui/app.h"
#include "tui/repl.h"

static const char usage[] =
    "usage: genlab [COMMAND] [ARGS]\n"
    "\n"
    "commands:\n"
    "  (none)              the workbench (full screen), opened on the shipped notebook\n"
    "                      examples/welcome.lua (copied to ~/.genlab/welcome.lua)\n"
    "  NOTEBOOK.lua        on a terminal: the workbench on that notebook; else run it\n"
    "  run FILE.lua [ARGS] run a Lua script headlessly (the script sees `arg`)\n"
    "  repl                a line REPL with readline history\n"
    "  generate --model PATH --prompt TEXT [FLAGS]\n"
    "                      generate text with a language model (see genlab(1))\n"
    "  serve --model PATH [--port N] [--host ADDR] [--api-key-env VAR]\n"
    "                      an OpenAI-compatible HTTP server for a language model\n"
    "  bench               measure this machine: sgemm GFLOP/s, training throughput\n"
    "  bench serve         load-test genlab serve: latency, tokens/s, overhead\n"
    "  --help, -h          this text\n"
    "  --version, -v       version, BLAS and threading\n"
    "\n"
    "environment: GENLAB_THREADS (OpenMP + BLAS threads), GENLAB_LUADIR (Lua files),\n"
    "             OMP_WAIT_POLICY (genlab sets passive unless it or GOMP_SPINCOUNT is set)\n"
    "see genlab(1) and genlab-lua(3)\n";

static int run_script(int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "genlab run: missing FILE.lua\n%s", usage);
        return 2;
    }
    lua_State *L = gl_runtime_new();
    if (!L) {
        fprintf(stderr, "genlab: cannot create Lua state\n");
        return 1;
    }
    gl_runtime_set_args(L, argv[0], argc - 1, argv + 1);
    int status = gl_runtime_dofile(L, argv[0], 0);
    lua_close(L);
    return status == 0 ? 0 : 1;
}

static int run_lua_command(const char *code, int argc, char **argv)
{
    lua_State *L = gl_runtime_new();
    if (!L) return 1;
    gl_runtime_set_args(L, "genlab", argc, argv);
    int status = gl_runtime_dostring(L, code, "=genlab");
    lua_close(L);
    return status == 0 ? 0 : 1;
}

static int print_version(void)
{
    return run_lua_command("print(require('genlab').system_info())", 0, NULL);
}

static bool on_terminal(void) { return isatty(STDIN_FILENO) && isatty(STDOUT_FILENO); }

/* No command: the workbench on the shipped notebook; without a terminal,
 * say where to go instead. */
static int open_default(void)
{
    if (!on_terminal()) {
        fputs("genlab: with no command genlab opens its full-screen workbench, which needs a terminal.\n"
              "  genlab run FILE.lua    runs a script (or a notebook) headlessly\n"
              "  genlab repl            reads Lua lines, also from a pipe: echo '1+1' | genlab repl\n"
              "  genlab --help          lists every command\n",
              stderr);
        return 2;
    }
    char welcome[4096];
    snprintf(welcome, sizeof welcome, "%s/welcome.lua", gl_runtime_examples_dir());
    return gl_app_welcome(welcome);
}

/* OpenMP's default is to spin while waiting for work. When the machine's
 * other core is busy (shared hosts, CI), the spinning thread and the one
 * doing the work fight over it: a 2-thread training step measured 30-40x
 * slower than with passive waiting, and no faster when the machine was
 * idle. libgomp reads the policy once, when it loads, so set it and start
 * over. A policy or spin count the user set is left alone. */
static void prefer_passive_waiting(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv("/proc/self/exe", argv); /* returns only on failure: run on with the default */
}

/* glibc returns large freed blocks to the kernel at once and faults them
 * back in on the next training step: 171k page faults and 15-20% of a
 * nanoGPT step. Keeping them (up to 256 MB of free heap) measured 90-98
 * instead of 117 ms/step; both settings are needed. */
static void keep_freed_memory(void)
{
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

int main(int argc, char **argv)
{
    prefer_passive_waiting(argv);
    keep_freed_memory();
    if (argc < 2) return open_default();
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-v") == 0) return print_version();
    if (strcmp(cmd, "run") == 0) return run_script(argc - 2, argv + 2);
    if (strcmp(cmd, "repl") == 0) return gl_repl_main(argc - 2, argv + 2);
    if (strcmp(cmd, "generate") == 0)
        return run_lua_command("os.exit(require('genlab.cli').generate(arg))", argc - 2, argv + 2);
    if (strcmp(cmd, "serve") == 0) return gl_serve_main(argc - 2, argv + 2);
    if (strcmp(cmd, "bench") == 0 && argc > 2 && strcmp(argv[2], "serve") == 0)
        return gl_serve_bench_main(argc - 3, argv + 3);
    if (strcmp(cmd, "bench") == 0) return run_lua_command("require('genlab.bench').main(arg)", argc - 2, argv + 2);
    if (cmd[0] != '-' && strlen(cmd) > 4 && strcmp(cmd + strlen(cmd) - 4, ".lua") == 0)
        return argc == 2 && on_terminal() ? gl_app_main(cmd) : run_script(argc - 1, argv + 1);
    fprintf(stderr, "genlab: unknown command '%s'\n%s", cmd, usage);
    return 2;
}
