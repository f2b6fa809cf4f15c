#!/bin/sh
# Keeps the layer picture of design.md true: each folder of src/ includes only
# folders below it; nothing below src/lua includes lua.h; nothing below src/tui
# includes curses or readline.
cd "${top_srcdir:-.}" || exit 1
rank() {
    case $1 in
    core) echo 0 ;; autograd) echo 1 ;; ops) echo 2 ;; nn) echo 3 ;; optim) echo 4 ;;
    io) echo 5 ;; text) echo 6 ;; models) echo 7 ;; lua) echo 8 ;; serve) echo 9 ;;
    tui) echo 10 ;; main) echo 11 ;; *) echo 99 ;;
    esac
}
n=0; fail=0
check() { n=$((n + 1)); if [ "$1" = ok ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
for dir in core ops autograd nn optim io text models lua serve tui; do
    [ -d "src/$dir" ] || continue
    bad=""
    me=$(rank "$dir")
    for f in src/$dir/*.[ch]; do
        [ -f "$f" ] || continue
        for inc in $(sed -n 's/^#include "\([a-z]*\)\/.*/\1/p' "$f"); do
            [ "$(rank "$inc")" -gt "$me" ] && bad="$bad $f->$inc"
            # ops may use ops but no other layer sideways at its own rank
        done
        if [ "$me" -lt 8 ] && grep -q '#include <\(lua\|lauxlib\|lualib\)\.h>' "$f"; then bad="$bad $f->lua.h"; fi
        if [ "$me" -lt 10 ] && grep -q '#include <\(curses\|ncurses\|ncursesw/curses\|readline/readline\)\.h>' "$f"; then bad="$bad $f->curses/readline"; fi
    done
    if [ -z "$bad" ]; then check ok "src/$dir includes only lower layers"; else check fail "src/$dir reaches up:$bad"; fi
done
echo "1..$n"
exit $fail
