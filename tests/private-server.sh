# Sourced by the benchmarks and clients/e2e: `roster serve` on a private
# PostgreSQL cluster in a fresh directory, stopped and removed on exit.
#
#   start_private_server NAME BINARY LISTEN [serve flags...]
#
# sets WORK (the directory), ROSTER (the CLI on its data directory), SERVER
# (the server's pid), PGBIN, SOCKET and PSQL (psql on the server's database:
# unaligned, no headers). KEEP_LOG=FILE keeps the server's log.
start_private_server() {
  local name=$1 binary=$2 listen=$3
  shift 3
  WORK=$(mktemp -d "/tmp/roster-$name.XXXXXX")
  # The postgres user must enter it, so the cluster lives inside.
  chmod 755 "$WORK"
  trap stop_private_server EXIT
  ROSTER="$binary --data-dir $WORK/data"
  RUST_LOG=${RUST_LOG:-info,sqlx=warn} $ROSTER serve --listen "$listen" "$@" 2> "$WORK/serve.log" &
  SERVER=$!
  until grep -q "serving gRPC" "$WORK/serve.log"; do
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.log" >&2; return 1; }
    sleep 0.2
  done
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  SOCKET=$(sed -n 5p "$WORK/data/postgres/postmaster.pid")
  PSQL="$PGBIN/psql -X -q -t -A -v ON_ERROR_STOP=1 -h $SOCKET -U roster -d roster"
}

stop_private_server() {
  if [ -n "${SERVER:-}" ]; then
    kill -TERM "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  fi
  if [ -n "${KEEP_LOG:-}" ] && [ -f "$WORK/serve.log" ]; then
    cp "$WORK/serve.log" "$KEEP_LOG"
  fi
  rm -rf "$WORK"
}
