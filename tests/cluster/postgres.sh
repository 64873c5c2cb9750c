#!/usr/bin/env bash
# A PostgreSQL server on this machine, for tests/cluster/: Debian's postgresql.
#   bash tests/cluster/postgres.sh start   installs the package where it is missing (as root), starts the server
#                                          and creates the role and database mnist_exp (password mnist_exp); idempotent
#   bash tests/cluster/postgres.sh stop    stops the server
# The tests reach it at postgresql://mnist_exp:mnist_exp@127.0.0.1:5432/mnist_exp.
set -euo pipefail
action=${1:-start}

if ! command -v pg_ctlcluster >/dev/null; then
    [ "$action" = stop ] && exit 0
    [ "$(id -u)" = 0 ] || { echo "postgres.sh: PostgreSQL is not installed; as root it installs Debian's postgresql." >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_lsclusters -h | grep -q "^$version main " || pg_createcluster "$version" main >/dev/null
if [ "$action" = stop ]; then
    pg_ctlcluster "$version" main stop 2>/dev/null || true
    exit 0
fi
pg_ctlcluster "$version" main start >/dev/null 2>&1 || pg_ctlcluster "$version" main status >/dev/null
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done

as_postgres() { su postgres -c "psql -q -v ON_ERROR_STOP=1 -tAc \"$1\""; }
[ "$(as_postgres "SELECT 1 FROM pg_roles WHERE rolname='mnist_exp'")" = 1 ] ||
    as_postgres "CREATE ROLE mnist_exp LOGIN PASSWORD 'mnist_exp'"
[ "$(as_postgres "SELECT 1 FROM pg_database WHERE datname='mnist_exp'")" = 1 ] ||
    as_postgres "CREATE DATABASE mnist_exp OWNER mnist_exp"
echo "PostgreSQL ready: postgresql://mnist_exp:***@127.0.0.1:5432/mnist_exp"
