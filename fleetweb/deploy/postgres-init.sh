#!/bin/sh
# Run once by the postgres image on an empty data folder (docker-compose mounts it into
# /docker-entrypoint-initdb.d/): the owner role runs migrations, the runtime role runs Fleetweb and may only
# INSERT and SELECT the audit log (its grants are given by `manage.py migrate`, see foundation/dbroles.py).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v owner_password="$FLEETWEB_DB_OWNER_PASSWORD" -v app_password="$FLEETWEB_DB_PASSWORD" <<'SQL'
CREATE ROLE fleetweb_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE fleetweb LOGIN PASSWORD :'app_password';
CREATE DATABASE fleetweb OWNER fleetweb_owner;
REVOKE ALL ON DATABASE fleetweb FROM PUBLIC;
GRANT CONNECT ON DATABASE fleetweb TO fleetweb;
SQL
