#!/usr/bin/env bash
# Make a PostgreSQL server answer on 127.0.0.1:5432 with a `browserml` role and `browserml_test`
# database, installing Debian's postgresql when absent. Idempotent; loud on failure.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $4}' | grep -q online; then
  pg_ctlcluster "$version" main start
fi
for _ in $(seq 1 30); do
  pg_isready -h 127.0.0.1 -q && break
  sleep 0.5
done
pg_isready -h 127.0.0.1 || { echo "PostgreSQL did not start on 127.0.0.1" >&2; exit 1; }
psql_su() { su postgres -c "psql -v ON_ERROR_STOP=1 -qtA -c \"$1\""; }
if [ "$(psql_su "SELECT 1 FROM pg_roles WHERE rolname='browserml'")" != "1" ]; then
  psql_su "CREATE ROLE browserml LOGIN PASSWORD 'browserml' CREATEDB"
fi
if [ "$(psql_su "SELECT 1 FROM pg_database WHERE datname='browserml_test'")" != "1" ]; then
  psql_su "CREATE DATABASE browserml_test OWNER browserml"
fi
echo "PostgreSQL $version ready: postgresql://browserml:browserml@127.0.0.1:5432/browserml_test"
