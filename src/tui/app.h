/* The workbench: a full-screen UI (curses panes, a readline input line) in
 * which Lua input and notebook cells run as jobs resumed between frames, so
 * training does not freeze the screen. */
#ifndef GL_TUI_APP_H
#define GL_TUI_APP_H

/* Runs the workbench on a terminal, opened on the notebook at path (NULL:
 * none, the REPL transcript only). Returns the exit status. */
int gl_app_main(const char *notebook);
/* The workbench on $HOME/.genlab/welcome.lua, a copy of the shipped
 * notebook made when it is missing. */
int gl_app_welcome(const char *shipped);

#endif
