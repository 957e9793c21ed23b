#!/usr/bin/env bash
# System packages the test suite needs: a PostgreSQL server on loopback for the SQL tests.
#
# Idempotent and quick when everything is already there. Runs as root without a TTY
# (CI, containers) or as a user with password-less sudo; otherwise it only explains what
# to do. It leaves a role and a database the tests connect to:
#
#   FORECASTKIT_PG_URL=postgresql+psycopg://forecastkit:forecastkit@127.0.0.1:5432/forecastkit_test
#
# (the tests' default). When the server cannot be set up the PostgreSQL tests skip,
# except under CI (CI variable set) where this script fails and the tests fail too.
set -euo pipefail

PG_ROLE="${FORECASTKIT_PG_ROLE:-forecastkit}"
PG_PASSWORD="${FORECASTKIT_PG_PASSWORD:-forecastkit}"
PG_DB="${FORECASTKIT_PG_DB:-forecastkit_test}"
PG_PORT="${FORECASTKIT_PG_PORT:-5432}"

say() { echo "system-packages: $*" >&2; }
give_up() {
    say "$1"
    say "PostgreSQL tests will be skipped. To enable them, install PostgreSQL (e.g. 'sudo apt-get install postgresql'),"
    say "start it on localhost and set FORECASTKIT_PG_URL=postgresql+psycopg://USER:PASSWORD@127.0.0.1:5432/DB"
    if [ -n "${CI:-}" ]; then
        say "CI is set: failing instead of skipping"
        exit 1
    fi
    exit 0
}

# Fast path: the server answers and our role can log in.
if command -v psql >/dev/null 2>&1 &&
    PGPASSWORD="$PG_PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DB" -tAc 'select 1' >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    give_up "PostgreSQL is not reachable on 127.0.0.1:$PG_PORT and this script cannot become root (no password-less sudo)."
fi
as_postgres() {
    if command -v runuser >/dev/null 2>&1; then
        "${SUDO[@]}" runuser -u postgres -- "$@"
    else
        "${SUDO[@]}" su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

# 1. Install the server when missing (Debian/Ubuntu).
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || give_up "PostgreSQL is not installed and apt-get is not available."
    say "installing PostgreSQL with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq >/dev/null || give_up "apt-get update failed"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null ||
        give_up "apt-get install postgresql failed"
fi

# 2. A cluster on the port, listening on loopback only, started.
cluster=$(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p {print $1" "$2; exit}')
if [ -z "$cluster" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    say "creating PostgreSQL $version cluster 'forecastkit' on port $PG_PORT"
    "${SUDO[@]}" pg_createcluster -p "$PG_PORT" "$version" forecastkit -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null ||
        give_up "pg_createcluster failed"
    cluster="$version forecastkit"
fi
read -r version name <<<"$cluster"
status=$(pg_lsclusters -h | awk -v v="$version" -v n="$name" '$1 == v && $2 == n {print $4}')
if [ "$status" != "online" ]; then
    say "starting PostgreSQL cluster $version/$name"
    "${SUDO[@]}" pg_ctlcluster "$version" "$name" start -- -o "-c listen_addresses=localhost" ||
        "${SUDO[@]}" pg_ctlcluster "$version" "$name" start || give_up "could not start PostgreSQL $version/$name"
fi
for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 1
done
pg_isready -q -h 127.0.0.1 -p "$PG_PORT" || give_up "PostgreSQL did not come up on 127.0.0.1:$PG_PORT"

# 3. The role and database the tests use.
as_postgres psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qtA >/dev/null <<SQL || give_up "could not create role $PG_ROLE"
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE "$PG_ROLE" LOGIN PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE "$PG_ROLE" LOGIN PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SQL
if ! as_postgres psql -p "$PG_PORT" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
    as_postgres createdb -p "$PG_PORT" -O "$PG_ROLE" "$PG_DB" || give_up "could not create database $PG_DB"
fi
PGPASSWORD="$PG_PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DB" -tAc 'select 1' >/dev/null 2>&1 ||
    give_up "role $PG_ROLE cannot log in to $PG_DB over 127.0.0.1 (check pg_hba.conf)"
say "PostgreSQL ready: postgresql+psycopg://$PG_ROLE:***@127.0.0.1:$PG_PORT/$PG_DB"
