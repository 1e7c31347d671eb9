#!/usr/bin/env bash
# The role and database the tests log in with, on a stock Debian cluster.
#
# A fresh `apt-get install postgresql` has neither a `test` database nor
# password-less TCP logins: its pg_hba.conf has `peer` on the Unix socket
# and `scram-sha-256` on 127.0.0.1. So this makes, idempotently and over the
# local socket as the `postgres` OS user (peer authentication, no password
# needed), a login role `orch_test` with CREATEDB (each test creates and
# drops its own `orch_test_*` database) and a database `orch_test` it owns,
# and gives the role a password so that it logs in over TCP as the stock
# pg_hba.conf asks (it also works on a `trust` cluster).
#
# Prints the URL the tests use (`TEST_DATABASE_URL`). Honours PGHOST (the
# socket directory) and PGPORT, so it can be tried on a private cluster.
set -euo pipefail

role=orch_test
port="${PGPORT:-5432}"
as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"
  elif [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"
  else sudo -u postgres "$@"; fi
}
as_postgres env PGPORT="$port" ${PGHOST:+PGHOST="$PGHOST"} \
  psql -qX -v ON_ERROR_STOP=1 -d postgres >/dev/null <<SQL
SELECT 'CREATE ROLE $role' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') \gexec
ALTER ROLE $role LOGIN CREATEDB PASSWORD '$role';
SELECT 'CREATE DATABASE $role OWNER $role' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$role') \gexec
SQL
echo "postgres://$role:$role@127.0.0.1:$port/$role"
