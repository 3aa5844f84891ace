#!/bin/sh
# Creates ReleaseBot's two database roles on the first start of compose's PostgreSQL.
# releasebot_owner owns the database and runs migrations; releasebot_app is what `serve` uses and
# is given its rights by `releasebot migrate --grant-to releasebot_app` (see docs/operations.md).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v owner_pw="$RELEASEBOT_OWNER_PASSWORD" -v app_pw="$RELEASEBOT_APP_PASSWORD" <<'SQL'
CREATE ROLE releasebot_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_pw';
CREATE ROLE releasebot_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_pw';
ALTER DATABASE releasebot OWNER TO releasebot_owner;
ALTER SCHEMA public OWNER TO releasebot_owner;
REVOKE ALL ON DATABASE releasebot FROM PUBLIC;
GRANT CONNECT ON DATABASE releasebot TO releasebot_app;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
