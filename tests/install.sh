#!/bin/sh
# `make install` lays out a working genlab: the program, the Lua module for
# stock lua5.4 (C part in the cpath, Lua part in the path), headers, the
# library with genlab.pc, and the man pages.
builddir=${top_builddir:-.}
n=0; fail=0
check() { n=$((n + 1)); if eval "$2" >/dev/null 2>&1; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
dest=$(mktemp -d); trap 'rm -rf "$dest"' EXIT
make -C "$builddir" install DESTDIR="$dest" >"$dest.log" 2>&1
check "make install succeeds" "test -d '$dest'"
prefix=$(sed -n 's/^prefix=//p' "$builddir/genlab.pc")
root="$dest$prefix"
check "installs the genlab program" "test -x '$root/bin/genlab'"
check "installs genlab/core.so into Lua's cpath" "test -f '$root/lib/lua/5.4/genlab/core.so'"
check "installs genlab/init.lua into Lua's path" "test -f '$root/share/lua/5.4/genlab/init.lua'"
check "installs headers" "test -f '$root/include/genlab/core/tensor.h'"
check "installs genlab.pc" "test -f '$root/lib/pkgconfig/genlab.pc'"
check "installs genlab(1)" "test -f '$root/share/man/man1/genlab.1'"
check "installs genlab-lua(3)" "test -f '$root/share/man/man3/genlab-lua.3'"
export LD_LIBRARY_PATH="$root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# A sanitizer build's module needs the ASan runtime preloaded into lua5.4; skip there.
if [ "$GENLAB_ASAN" = yes ]; then n=$((n + 1)); echo "ok $n - # SKIP stock lua5.4 with an ASan module"; else
check "stock lua5.4 can require genlab" \
  "LUA_PATH='$root/share/lua/5.4/?.lua;$root/share/lua/5.4/?/init.lua' LUA_CPATH='$root/lib/lua/5.4/?.so' \
   lua5.4 -e 'local gl = require \"genlab\"; assert(gl.zeros(2, 3):numel() == 6)'"
fi
check "the installed program runs scripts with its installed Lua files" \
  "printf 'local gl = require \"genlab\"; print(gl.ones(3):numel())' > '$dest/t.lua' &&
   GENLAB_LUADIR='$root/share/lua/5.4' '$root/bin/genlab' run '$dest/t.lua' | grep -q 3"
rm -f "$dest.log"
echo "1..$n"
exit $fail
