#!/usr/bin/env bash
# A throwaway PostgreSQL server for the registry tests: installs Debian's postgresql package when
# it is missing, starts a server on 127.0.0.1 in its own data directory (no systemd needed),
# creates a role and a database, and prints the SQLAlchemy URL on stdout (everything else goes
# to stderr). Idempotent: a second call finds the running server and prints the same URL.
#
#   export MODELFAB_TEST_PG_URL="$(bash .ci/postgres.sh)"
#
# Settings (environment): MODELFAB_PG_DIR (data directory, default /tmp/modelfab-pg),
# MODELFAB_PG_PORT (default 55432). The server trades durability for speed (fsync off): it is
# for tests only. Stop it with: pg_ctl -D "$MODELFAB_PG_DIR/data" stop (as its owner).
set -euo pipefail

PGDIR="${MODELFAB_PG_DIR:-/tmp/modelfab-pg}"
PORT="${MODELFAB_PG_PORT:-55432}"
ROLE=modelfab
PASSWORD=modelfab
DB=modelfab_test
URL="postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"

die() {
    echo "postgres.sh: $*" >&2
    exit 1
}
log() { echo "postgres.sh: $*" >&2; }

pg_bindir() {
    # The newest installed server version's binaries.
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$dir" ] && [ -x "$dir/postgres" ] && echo "$dir"
}

BIN="$(pg_bindir || true)"
if [ -z "$BIN" ]; then
    [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed; run as root or: apt-get install postgresql"
    log "installing Debian's postgresql package (log: $PGDIR/apt.log)"
    mkdir -p "$PGDIR"
    export DEBIAN_FRONTEND=noninteractive
    install=(apt-get install -y -q --no-install-recommends postgresql)
    "${install[@]}" >"$PGDIR/apt.log" 2>&1 \
        || { apt-get update -q >>"$PGDIR/apt.log" 2>&1 && "${install[@]}" >>"$PGDIR/apt.log" 2>&1; } \
        || { tail -n 20 "$PGDIR/apt.log" >&2; die "apt-get install postgresql failed"; }
    BIN="$(pg_bindir)" || die "postgresql installed but no server binary under /usr/lib/postgresql"
fi

# The server refuses to run as root: run it as the postgres user (created by the package).
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "no 'postgres' user to run the server as"
    as_owner() { runuser -u postgres -- "$@"; }
    mkdir -p "$PGDIR"
    chown postgres: "$PGDIR"
else
    as_owner() { "$@"; }
    mkdir -p "$PGDIR"
fi
DATA="$PGDIR/data"
SOCKDIR="$PGDIR"

if [ ! -s "$DATA/PG_VERSION" ]; then
    log "initdb in $DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >"$PGDIR/initdb.log" 2>&1 \
        || { cat "$PGDIR/initdb.log" >&2; die "initdb failed"; }
    cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCKDIR'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
fi

if as_owner "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
    log "server already running on 127.0.0.1:$PORT"
else
    log "starting server on 127.0.0.1:$PORT"
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$PGDIR/server.log" -w -t 60 start >&2 \
        || { tail -n 20 "$PGDIR/server.log" >&2 || true; die "the server did not start"; }
fi

psql_admin() { as_owner psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKDIR" -p "$PORT" -U postgres "$@"; }
if [ "$(psql_admin -tA -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    psql_admin -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" || die "cannot create role $ROLE"
fi
if [ "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    psql_admin -c "CREATE DATABASE $DB OWNER $ROLE" || die "cannot create database $DB"
fi

# Prove the URL works over TCP with the password, as the tests will connect.
PGPASSWORD="$PASSWORD" psql -X -q -tA -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d "$DB" -c "SELECT 1" \
    >/dev/null || die "cannot log in as $ROLE on 127.0.0.1:$PORT/$DB"
echo "$URL"
