#!/usr/bin/env bash
# Bash completion for the controller CLI (scripts/completion/controller.bash):
# sourced in bash, COMPREPLY for commands, subcommands, options and option
# values; every command and option `controller help` lists completes (the
# table cannot drift from the CLI); `make install` puts it where
# bash-completion looks.
. "$(dirname "$0")/lib.sh"
T="$E2E_TMP"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SCRIPT="$ROOT/scripts/completion/controller.bash"

# completes "WORDS..." : COMPREPLY, sorted, one line, for the command line
# "controller WORDS" with the cursor on the last word ("" for a new word).
completes() {
  bash --norc --noprofile -c '
    . "$1"; shift
    COMP_WORDS=(controller "$@"); COMP_CWORD=$(($# ))
    _ztr_controller
    printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " " | sed "s/ $//"' _ "$SCRIPT" "$@"
}
expect_completion() { # expect_completion "WANT" WORDS...
  local want="$1"; shift
  local got; got="$(completes "$@")"
  [ "$got" = "$want" ]; check "controller $* <TAB> -> [$want] (got [$got])" $?
}

run bash --norc --noprofile -c '. "$1" && complete -p controller' _ "$SCRIPT"
expect_status 0 "the script sources cleanly"
expect_out "complete -F _ztr_controller controller" "and registers for controller"

expect_completion "token" to
expect_completion "federation fleet" f
expect_completion "create delete list" token ""
expect_completion "revoke revoke-grant" federation revoke
expect_completion "--role" token create --ro
expect_completion "--address --ca --env --help --json --name --prefix --replace --role --ttl --uses" token create ""
expect_completion "connector tunneler" token create --role ""
expect_completion "tunneler" token create --name x --role t
expect_completion "--expired --expiring-within" fleet --exp
expect_completion "EXPIRED" fleet --state E
expect_completion "--json" node list --j
expect_completion "--pem" ca show --p
expect_completion "list" --ca /etc/ztr/admin-ca.pem node l
expect_completion "--config" --con
expect_completion "--version" serve --vers
: >"$T/admin-ca.pem"
expect_completion "$T/admin-ca.pem" node list --ca "$T/admin-c"

# Every command and option of `controller help` completes.
run "$ZTR_TEST_BIN/controller" help
expect_status 0 "controller help"
missing=""
while read -r line; do
  line="${line#usage: }"
  [[ "$line" == controller\ * ]] || continue
  read -ra w <<<"${line#controller }"
  group="${w[0]}"
  case "$group" in serve | \[serve\] | --*) continue ;; esac
  [[ " $(completes "") " == *" $group "* ]] || missing+=" $group"
  verb=""
  if [[ -n "${w[1]:-}" && "${w[1]}" != -* && "${w[1]}" != \[* && "${w[1]}" =~ ^[a-z-]+$ ]] &&
     [[ " $(completes "$group" "") " == *" ${w[1]} "* ]]; then
    verb="${w[1]}"
  fi
  for opt in $(grep -o -- '--[a-z-]*' <<<"$line" | sort -u); do
    if [ -n "$verb" ]; then got="$(completes "$group" "$verb" "")"; else got="$(completes "$group" "")"; fi
    [[ " $got " == *" $opt "* ]] || missing+=" $group${verb:+ $verb} $opt;"
  done
done <<<"$RUN_OUT"
[ -z "$missing" ]; check "every command and option of controller help completes (missing:$missing)" $?

# make install: $(PREFIX)/share/bash-completion/completions/controller.
BUILD_DIR="$(cd "$ZTR_TEST_BIN/.." && pwd)"
BUILD_ARG="${BUILD_DIR#"$ROOT"/}"
make -C "$ROOT" --no-print-directory install BUILD="$BUILD_ARG" DESTDIR="$T/stage" PREFIX=/usr \
  INSTALL_UI=no -o "$BUILD_ARG/bin/controller" -o "$BUILD_ARG/bin/connector" \
  -o "$BUILD_ARG/bin/tunneler" -o "$BUILD_ARG/bin/ztr-pki" >"$T/install.log" 2>&1
check "make install DESTDIR=... succeeds ($(tail -2 "$T/install.log"))" $?
cmp -s "$SCRIPT" "$T/stage/usr/share/bash-completion/completions/controller"
check "the completion is installed as /usr/share/bash-completion/completions/controller" $?
expect_file_mode "$T/stage/usr/share/bash-completion/completions/controller" 644 "readable by every user"
finish
