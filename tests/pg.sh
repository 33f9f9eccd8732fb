# shellcheck shell=bash
# A real PostgreSQL server for the tests, started by them: initdb into a
# temporary directory (as an unprivileged user when we are root: initdb
# refuses root), listening on a free port of 127.0.0.1 only (and a Unix
# socket in that directory), trust authentication for that one local role
# (a throw-away server holding nothing), stopped and removed by pg_stop.
#
#   . tests/pg.sh; pg_start || exit 1   # sets PG_URL_PREFIX, PG_DIR, PG_PORT
#   ... postgresql://ztr@127.0.0.1:$PG_PORT/postgres ...
#   pg_stop
#
# pg_available: whether Debian's server binaries are installed.
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"

pg_available() { [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ]; }

pg_as() {  # pg_as CMD...: as the server's owner
  if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

pg_start() {
  pg_available || { echo "pg: no PostgreSQL server binaries (make deps installs them)" >&2; return 1; }
  PG_DIR="$(mktemp -d /tmp/ztr-pg.XXXXXX)"
  chmod 0755 "$PG_DIR"
  mkdir -p "$PG_DIR/data"
  [ "$(id -u)" = 0 ] && chown nobody "$PG_DIR" "$PG_DIR/data"
  if ! pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U ztr -A trust --no-sync -E UTF8 \
      >"$PG_DIR/initdb.log" 2>&1; then
    echo "pg: initdb failed:" >&2; tail -5 "$PG_DIR/initdb.log" >&2; return 1
  fi
  local i
  for i in $(seq 1 20); do
    PG_PORT=$((30000 + RANDOM % 20000))
    ss -Htln "sport = :$PG_PORT" 2>/dev/null | grep -q . && continue
    if pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
        -o "-h 127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off -c max_connections=200" \
        start >/dev/null 2>&1; then
      PG_URL_PREFIX="postgresql://ztr@127.0.0.1:$PG_PORT/"
      export PG_URL_PREFIX PG_DIR PG_PORT
      return 0
    fi
  done
  echo "pg: the server did not start:" >&2; tail -5 "$PG_DIR/server.log" >&2
  return 1
}

pg_stop() {
  [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ] || return 0
  pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1
  rm -rf "$PG_DIR"
  PG_DIR=""
}

# pg_e2e: for an e2e script (after lib.sh): a server, a database "ztr"
# (PG_URL), everything stopped and removed when the script exits.
pg_e2e() {
  pg_start || return 1
  trap 'for p in "${E2E_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; pg_stop; rm -rf "$E2E_TMP"' EXIT
  psql -q "${PG_URL_PREFIX}postgres" -c "CREATE DATABASE ztr" || return 1
  PG_URL="${PG_URL_PREFIX}ztr"
}

# pg_cluster_e2e: pg_e2e, and SEAL, a CA seal key file (CA_SEAL_KEY_FILE)
# for controllers sharing PG_URL.
pg_cluster_e2e() {
  pg_e2e || return 1
  SEAL="$E2E_TMP/ca-seal.key"
  openssl rand -hex 32 >"$SEAL" && chmod 600 "$SEAL"
}
