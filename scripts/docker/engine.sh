# Sourced by scripts/docker/*.sh: a Docker engine to talk to, and the tools, from Debian's packages only.
#   docker_can_run        prints why not and returns 1 when no engine can be had on this machine
#   docker_tools          installs docker.io docker-compose debootstrap (apt) when missing and we are root
#   engine_start          uses a running engine (DOCKER_HOST or /var/run/docker.sock) or starts dockerd on a
#                         private socket under $STRATOS_DOCKER_DIR; engine_stop stops only a dockerd it started
# The engine's data root ($STRATOS_DOCKER_DIR/root) is kept between runs: base images and build cache survive.
STRATOS_DOCKER_DIR=${STRATOS_DOCKER_DIR:-/var/cache/stratos-docker}
export DOCKER_BUILDKIT=0 # the classic builder: Debian has no buildx plugin
# docker-compose 1.29 builds through the docker CLI, like `docker build`: the same build context, so the README's
# `docker-compose up --build` reuses the layers of the images built before (its own Python client's context
# differs in the tar headers, which the classic builder's cache keys include: everything would build twice)
export COMPOSE_DOCKER_CLI_BUILD=1
ENGINE_PID=
# Debian's client first: another `docker` on PATH (e.g. /usr/local/bin) may be newer than the engine we start,
# and docker-compose must run the same one
use_debian_client() {
  DOCKER=docker
  [ -x /usr/bin/docker ] || return 0
  DOCKER=/usr/bin/docker
  if [ "$(type -P docker)" != /usr/bin/docker ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$STRATOS_DOCKER_DIR/bin"
    ln -sfn /usr/bin/docker "$STRATOS_DOCKER_DIR/bin/docker"
    export PATH="$STRATOS_DOCKER_DIR/bin:$PATH"
  fi
}
use_debian_client
docker() { "$DOCKER" "$@"; }

apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q "$@"; }

docker_can_run() {
  if [ -n "${DOCKER_HOST:-}" ] || [ -S /var/run/docker.sock ]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
      # a running engine; the base images are made locally, which needs root (debootstrap, chroot)
      if [ "$(id -u)" != 0 ] && ! docker image inspect debian:bookworm-slim node:20-bookworm-slim node:20-bookworm >/dev/null 2>&1; then
        echo "the base images (debian:bookworm-slim, node:20-bookworm-slim, node:20-bookworm) are missing, and making them needs root"
        return 1
      fi
      return 0
    fi
  fi
  if [ "$(id -u)" != 0 ]; then echo "no running Docker engine, and not root (cannot start dockerd)"; return 1; fi
  if ! command -v dockerd >/dev/null 2>&1 && ! command -v apt-get >/dev/null 2>&1; then
    echo "no dockerd and no apt-get to install Debian's docker.io"; return 1
  fi
  if [ ! -w /sys/fs/cgroup ] && [ ! -d /sys/fs/cgroup/unified ] && [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
    echo "no cgroup file system to run containers in"; return 1
  fi
  return 0
}

docker_tools() {
  local need=()
  { command -v dockerd && command -v iptables; } >/dev/null 2>&1 || [ -n "${DOCKER_HOST:-}" ] || need+=(docker.io iptables)
  [ -x /usr/bin/docker ] || command -v docker >/dev/null 2>&1 || need+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  if [ ${#need[@]} -gt 0 ]; then
    echo "apt-get install ${need[*]}"
    apt_get install "${need[@]}" >/dev/null 2>&1 || { apt_get update >/dev/null 2>&1 && apt_get install "${need[@]}" >/dev/null; }
  fi
  use_debian_client
}

engine_start() {
  if [ -n "${DOCKER_HOST:-}" ] && docker info >/dev/null 2>&1; then echo "using the engine at $DOCKER_HOST"; return 0; fi
  if [ -z "${DOCKER_HOST:-}" ] && [ -S /var/run/docker.sock ] && docker info >/dev/null 2>&1; then
    echo "using the engine at /var/run/docker.sock"; return 0
  fi
  local d=$STRATOS_DOCKER_DIR
  mkdir -p "$d/root" "$d/exec"
  export DOCKER_HOST=unix://$d/docker.sock
  if [ -f "$d/dockerd.pid" ] && kill -0 "$(cat "$d/dockerd.pid")" 2>/dev/null; then
    echo "a dockerd from an earlier run still holds $d (pid $(cat "$d/dockerd.pid")); stop it first" >&2
    return 1
  fi
  # no systemd here: dockerd by hand on its own socket, data root and exec root (the machine's own
  # /var/run/docker.sock and /var/lib/docker are left alone)
  nice -n "${STRATOS_DOCKER_NICE:-10}" dockerd --data-root "$d/root" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" -H "$DOCKER_HOST" \
    --storage-driver=overlay2 >"$d/dockerd.log" 2>&1 &
  ENGINE_PID=$!
  local i
  for i in $(seq 60); do docker info >/dev/null 2>&1 && break; kill -0 "$ENGINE_PID" 2>/dev/null || break; sleep 1; done
  if ! docker info >/dev/null 2>&1; then
    echo "dockerd did not start:" >&2
    tail -30 "$d/dockerd.log" >&2
    engine_stop
    return 1
  fi
  echo "started dockerd (pid $ENGINE_PID) on $DOCKER_HOST"
}

engine_stop() {
  [ -n "$ENGINE_PID" ] || return 0
  kill "$ENGINE_PID" 2>/dev/null || true
  local i
  for i in $(seq 30); do kill -0 "$ENGINE_PID" 2>/dev/null || break; sleep 1; done
  kill -9 "$ENGINE_PID" 2>/dev/null || true
  wait "$ENGINE_PID" 2>/dev/null || true
  umount "$STRATOS_DOCKER_DIR/exec/netns/default" 2>/dev/null || true # dockerd leaves this nsfs mount behind
  ENGINE_PID=
}
