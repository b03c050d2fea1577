#!/usr/bin/env bash
# Checks docker-compose.yml and the services' Dockerfiles without a Docker daemon:
#  1. the Compose tool's own validation (`docker compose config` or Debian's `docker-compose config`), for the
#     default services and with the `postgres` profile;
#  2. a structural check (scripts/check-compose.py): the five services (the labeler in its profile), their ports, volumes, Dockerfiles,
#     the postgres profile, and that every PLC_/PDS_/RELAY_/APPVIEW_/LABELER_ variable set in the compose file is one
#     the service's src/config.ts reads.
# Tools come from Debian's packages: when none is found and we are root, `apt-get install docker-compose`
# (which brings python3-yaml). Set CHECK_COMPOSE_NO_INSTALL=1 to never install. Exit 0 = all good.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FILE=docker-compose.yml

say() { printf 'check-compose: %s\n' "$*" >&2; }

apt_install() {
  [ "${CHECK_COMPOSE_NO_INSTALL:-}" = "1" ] && return 1
  [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1 || return 1
  say "installing $* (Debian packages)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
  }
}

compose_cmd() {
  if docker compose version >/dev/null 2>&1; then echo "docker compose"; return 0; fi
  if command -v docker-compose >/dev/null 2>&1; then echo "docker-compose"; return 0; fi
  return 1
}

COMPOSE="$(compose_cmd || true)"
if [ -z "$COMPOSE" ] && apt_install docker-compose; then COMPOSE="$(compose_cmd || true)"; fi
if [ -z "$COMPOSE" ]; then
  if [ "${CI:-}" = "true" ]; then say "no Compose tool found (docker compose / docker-compose) and none could be installed"; exit 1; fi
  say "no Compose tool found (docker compose / docker-compose): skipping its validation"
else
  say "validating $FILE with $COMPOSE"
  # interpolation needs no real secrets, and a developer's .env must not change the verdict
  export COMPOSE_PROJECT_NAME=stratos-check
  EMPTY_ENV="$(mktemp)"
  trap 'rm -f "$EMPTY_ENV"' EXIT
  $COMPOSE -f "$FILE" --project-directory "$ROOT" --env-file "$EMPTY_ENV" config -q
  APPVIEW_DB_URL=postgres://stratos:stratos@postgres:5432/stratos \
    $COMPOSE -f "$FILE" --project-directory "$ROOT" --env-file "$EMPTY_ENV" --profile postgres config -q
  say "$COMPOSE: ok (default and --profile postgres)"
fi

if command -v yamllint >/dev/null 2>&1; then
  yamllint -d '{extends: default, rules: {line-length: {max: 180}, document-start: disable, truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}' "$FILE"
  say "yamllint: ok"
fi

PY=""
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' >/dev/null 2>&1; then PY="$candidate"; break; fi
done
if [ -z "$PY" ] && apt_install python3-yaml && /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1; then PY=/usr/bin/python3; fi
if [ -z "$PY" ]; then
  say "python3 with PyYAML not found (apt-get install python3-yaml)"
  exit 1
fi
"$PY" scripts/check-compose.py "$FILE"
