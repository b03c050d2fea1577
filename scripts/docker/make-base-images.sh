#!/usr/bin/env bash
# Local stand-ins for the base images the Dockerfiles use, built without any image registry:
#   debian:bookworm-slim   Debian bookworm by debootstrap from the apt mirror (deploy/pds/caddy.Dockerfile)
#   node:20-bookworm-slim  the same plus the host's Node 20, laid out like the official image
#                          (/usr/local/bin/node, npm and corepack in /usr/local/lib/node_modules, user `node`
#                          uid/gid 1000, docker-entrypoint.sh); the services' runtime stage
#   node:20-bookworm       the slim one plus the build tools of buildpack-deps that node-gyp needs
#                          (python3, make, g++, git, ...) from Debian's packages; the services' build stage
# Only images that are missing are made (pass --force to remake all). Needs root, debootstrap, a host Node 20
# and a Docker engine (DOCKER_HOST). The debootstrap root file system is cached in $BASE_WORK.
set -euo pipefail
BASE_WORK=${BASE_WORK:-/var/cache/stratos-docker/base}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
FORCE=${1:-}
DOCKER=${DOCKER:-docker}
SLIM=$BASE_WORK/rootfs-slim
FULL=$BASE_WORK/rootfs-full
mkdir -p "$BASE_WORK"

have() { [ "$FORCE" != --force ] && $DOCKER image inspect "$1" >/dev/null 2>&1; }
if have debian:bookworm-slim && have node:20-bookworm-slim && have node:20-bookworm; then
  echo "base images present: debian:bookworm-slim node:20-bookworm-slim node:20-bookworm"
  exit 0
fi
node --version | grep -q '^v20\.' || { echo "make-base-images: the host's node must be Node 20 (got $(node --version))" >&2; exit 1; }

# --- Debian bookworm, minimal ---
if [ ! -x "$SLIM/bin/bash" ] || [ ! -f "$BASE_WORK/.debootstrap-done" ]; then
  rm -rf "$SLIM" "$BASE_WORK/.debootstrap-done"
  debootstrap --variant=minbase bookworm "$SLIM" "$MIRROR" >"$BASE_WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$BASE_WORK/debootstrap.log"; exit 1; }
  rm -rf "$SLIM/var/lib/apt/lists/"* "$SLIM/var/cache/apt/"*.bin
  touch "$BASE_WORK/.debootstrap-done"
fi
DEBIAN_CFG=(-c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'CMD ["bash"]')
if ! have debian:bookworm-slim; then
  # the plain Debian tree (without the Node files added below)
  tar --numeric-owner -C "$SLIM" --exclude=./usr/local/bin/node --exclude=./usr/local/lib/node_modules \
    --exclude=./usr/local/include/node --exclude=./home/node -c . | $DOCKER import "${DEBIAN_CFG[@]}" - debian:bookworm-slim >/dev/null
  echo "made debian:bookworm-slim"
fi
if have node:20-bookworm-slim && have node:20-bookworm; then exit 0; fi

# --- Node 20 from the host, official-image layout (a copy: the debian image above was taken without it) ---
NODESLIM=$BASE_WORK/rootfs-node-slim
rm -rf "$NODESLIM"
cp -a "$SLIM" "$NODESLIM"
NODE_BIN=$(readlink -f "$(command -v node)")
NODE_PREFIX=$(dirname "$(dirname "$NODE_BIN")") # /usr for Debian/nodesource packages, /usr/local for tarballs
install -D -m 0755 "$NODE_BIN" "$NODESLIM/usr/local/bin/node"
mkdir -p "$NODESLIM/usr/local/lib/node_modules" "$NODESLIM/usr/local/include"
cp -a "$NODE_PREFIX/lib/node_modules/npm" "$NODESLIM/usr/local/lib/node_modules/"
[ -d "$NODE_PREFIX/lib/node_modules/corepack" ] && cp -a "$NODE_PREFIX/lib/node_modules/corepack" "$NODESLIM/usr/local/lib/node_modules/"
cp -a "$NODE_PREFIX/include/node" "$NODESLIM/usr/local/include/"
ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$NODESLIM/usr/local/bin/npm"
ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$NODESLIM/usr/local/bin/npx"
[ -d "$NODESLIM/usr/local/lib/node_modules/corepack" ] && ln -sfn ../lib/node_modules/corepack/dist/corepack.js "$NODESLIM/usr/local/bin/corepack"
chroot "$NODESLIM" sh -c 'groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node'
cat >"$NODESLIM/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
# as the official image: run the command with node if it starts with "-" or is not a system command
if [ "${1#-}" != "${1}" ] || [ -z "$(command -v "${1}")" ] || { [ -f "${1}" ] && ! [ -x "${1}" ]; }; then
  set -- node "$@"
fi
exec "$@"
EOF
chmod 0755 "$NODESLIM/usr/local/bin/docker-entrypoint.sh"
chroot "$NODESLIM" node --version >/dev/null

# --- the build image: + compilers and tools (buildpack-deps' share that node-gyp and git dependencies use) ---
rm -rf "$FULL"
cp -a "$NODESLIM" "$FULL"
cp /etc/resolv.conf "$FULL/etc/resolv.conf"
mount -t proc proc "$FULL/proc"
trap 'umount "$FULL/proc" 2>/dev/null || true' EXIT
chroot "$FULL" sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --no-install-recommends \
  ca-certificates curl wget git openssh-client procps xz-utils python3 make g++ gcc libc6-dev pkg-config && apt-get clean' \
  >"$BASE_WORK/apt-full.log" 2>&1 || { tail -20 "$BASE_WORK/apt-full.log"; exit 1; }
umount "$FULL/proc"
trap - EXIT
# Machines whose HTTPS egress goes through a TLS-intercepting proxy keep its CA in /usr/local/share/ca-certificates:
# the build image trusts the same CAs as the host (for npm and pnpm), nothing else changes.
for c in /usr/local/share/ca-certificates/*.crt; do [ -f "$c" ] && cp "$c" "$FULL/usr/local/share/ca-certificates/"; done
chroot "$FULL" update-ca-certificates >/dev/null
rm -rf "$FULL/var/lib/apt/lists/"* "$FULL/var/cache/apt/"*.bin "$FULL/etc/resolv.conf"

NODE_CFG=(-c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  -c "ENV NODE_VERSION=$(node --version | sed 's/^v//')"
  -c 'ENTRYPOINT ["docker-entrypoint.sh"]' -c 'CMD ["node"]')
tar --numeric-owner -C "$NODESLIM" -c . | $DOCKER import "${NODE_CFG[@]}" - node:20-bookworm-slim >/dev/null
echo "made node:20-bookworm-slim (node $(node --version))"
# NODE_EXTRA_CA_CERTS: the system CAs (with the egress proxy's, if any) for node, npm and pnpm;
# npm_config_nodedir: node-gyp uses the headers in the image instead of downloading them from nodejs.org
tar --numeric-owner -C "$FULL" -c . | $DOCKER import "${NODE_CFG[@]}" \
  -c 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  -c 'ENV npm_config_nodedir=/usr/local' - node:20-bookworm >/dev/null
echo "made node:20-bookworm"
rm -rf "$NODESLIM" "$FULL"
