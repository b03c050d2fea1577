#!/usr/bin/env bash
# The Docker smoke test: every Dockerfile built and both compose files run for real, with nothing from an image
# registry (the engine and the tools are Debian's packages, the base images are made locally:
# scripts/docker/make-base-images.sh; npm packages come from the npm registry during the builds).
#
#   bash scripts/docker/smoke.sh            (root, or a running Docker engine; .ci/run calls it)
#
#  1. Debian's docker.io, docker-compose and debootstrap (apt) when missing; a running engine is used as it is,
#     otherwise dockerd is started on a private socket under $STRATOS_DOCKER_DIR (default /var/cache/stratos-docker,
#     kept between runs: base images and build cache survive) and stopped at the end.
#  2. The base images debian:bookworm-slim, node:20-bookworm-slim, node:20-bookworm when missing.
#  3. docker build of services/{plc,pds,relay,appview,labeler}/Dockerfile and deploy/pds/caddy.Dockerfile.
#  4. docker-compose.yml (the dev network) on free 127.0.0.1 ports: every service healthy and answering
#     /xrpc/_health; an account and a post on the PDS reach the AppView through the relay.
#  5. deploy/pds (the production PDS + Caddy) by the commands of README "Run your own PDS", as written there,
#     with test stand-ins only for what a real deployment gets from outside (see scripts/docker/selfhost.override.yaml
#     and the hooks below): a local CA (Caddy's internal issuer) instead of Let's Encrypt, a --connect-to style
#     redirect instead of DNS (curl's .curlrc, Node's scripts/docker/connect-to.cjs), a local PLC directory and a
#     local stand-in relay. Checks: /xrpc/_health over HTTPS through Caddy, the account the README creates
#     signs in and posts, its handle gets a certificate on demand and resolves, /tls-check answers 200 only for
#     served names, request-crawl reaches the relay, a backup runs inside the container.
# Everything it starts is stopped and removed at the end (images are kept as cache). Exit 0 = all passed.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/scripts/docker
# shellcheck source=engine.sh
. "$HERE/engine.sh"
export DOCKER
RUN=$STRATOS_DOCKER_DIR/run
HOST=pds.example.com
T0=$SECONDS
step() { printf '\n=== [%ss] %s\n' $((SECONDS - T0)) "$*"; }
fail() { printf '\nSMOKE TEST FAILED: %s\n' "$*" >&2; exit 1; }
freeport() { node -e 's=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=process.argv[1].split(".").reduce((o,k)=>o?.[k],JSON.parse(s));console.log(typeof v==="string"?v:JSON.stringify(v))})' "$1"; }

DEV_PROJECT=stratos-smoke-dev
PDS_PROJECT=stratos-smoke-pds
SELFHOST_FILES="$REPO/deploy/pds/compose.yaml:$HERE/selfhost.override.yaml"
RECORDER_PID=
cleanup() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ] && docker info >/dev/null 2>&1; then
    echo "--- logs (last lines of each service, without the health checks' requests) ---"
    quiet() { grep -v '"/xrpc/_health"\|"request completed"' | tail -80; }
    docker-compose -p $DEV_PROJECT -f "$REPO/docker-compose.yml" logs --no-color --tail 60 2>/dev/null | quiet
    COMPOSE_FILE=$SELFHOST_FILES docker-compose -p $PDS_PROJECT logs --no-color --tail 60 2>/dev/null | quiet
  fi
  if docker info >/dev/null 2>&1; then
    docker-compose -p $DEV_PROJECT -f "$REPO/docker-compose.yml" --profile postgres --profile labeler down -v --remove-orphans >/dev/null 2>&1
    COMPOSE_FILE=$SELFHOST_FILES docker-compose -p $PDS_PROJECT down -v --remove-orphans >/dev/null 2>&1
    docker image prune -f >/dev/null 2>&1 # earlier builds' images, now untagged
  fi
  [ -n "$RECORDER_PID" ] && kill "$RECORDER_PID" 2>/dev/null
  # the env files the README's `stratos pds init` wrote into the checkout; a developer's own are put back
  rm -f "$REPO/deploy/pds/pds.env" "$REPO/deploy/pds/caddy.env"
  for f in pds.env caddy.env; do [ -f "$RUN/saved-$f" ] && mv "$RUN/saved-$f" "$REPO/deploy/pds/$f"; done
  engine_stop
  if [ "$rc" = 0 ]; then echo "docker smoke test: all passed in $((SECONDS - T0)) s"; else echo "docker smoke test: FAILED (exit $rc) after $((SECONDS - T0)) s"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "tools and engine"
if ! why=$(docker_can_run); then fail "no Docker engine can run here: $why"; fi
docker_tools
engine_start
docker version --format 'docker client {{.Client.Version}}, engine {{.Server.Version}}'
docker-compose version --short | sed 's/^/docker-compose /'
rm -rf "$RUN" && mkdir -p "$RUN"

step "base images (made locally when missing: scripts/docker/make-base-images.sh)"
bash "$HERE/make-base-images.sh"

build() { # tag dockerfile context
  local t=$SECONDS
  docker build -q -f "$2" -t "$1" "$3" >"$RUN/build-$1.log" 2>&1 || { tail -40 "$RUN/build-$1.log"; fail "docker build $2"; }
  echo "built $1 from $2 in $((SECONDS - t)) s"
}
step "docker build (every Dockerfile)"
for s in plc pds relay appview labeler; do build "stratos-$s" "$REPO/services/$s/Dockerfile" "$REPO"; done
build stratos-caddy "$REPO/deploy/pds/caddy.Dockerfile" "$REPO/deploy/pds"
docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^stratos-' | sort

wait_healthy() { # container-id name seconds
  local st=
  for _ in $(seq "$3"); do
    st=$(docker inspect --format '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$1")
    case $st in *" healthy") echo "$2: healthy"; return 0 ;; exited* | dead* | restarting*) break ;; esac
    sleep 1
  done
  docker logs --tail 30 "$1" 2>&1
  fail "$2 is not healthy ($st)"
}

# ---------------------------------------------------------------- 4. the dev network
step "dev network: docker-compose.yml up (127.0.0.1, free ports)"
export HOST_PORT_PLC HOST_PORT_PDS HOST_PORT_RELAY HOST_PORT_APPVIEW
HOST_PORT_PLC=$(freeport) HOST_PORT_PDS=$(freeport) HOST_PORT_RELAY=$(freeport) HOST_PORT_APPVIEW=$(freeport)
DEV=(docker-compose -p $DEV_PROJECT -f "$REPO/docker-compose.yml")
"${DEV[@]}" up -d 2>&1 | grep -v '^Creating\|^Starting' || true
for s in plc pds relay appview; do wait_healthy "$("${DEV[@]}" ps -q $s)" "$s" 120; done
for p in "plc $HOST_PORT_PLC" "pds $HOST_PORT_PDS" "relay $HOST_PORT_RELAY" "appview $HOST_PORT_APPVIEW"; do
  set -- $p
  echo "$1 http://127.0.0.1:$2/xrpc/_health -> $(curl -fsS -m 5 "http://127.0.0.1:$2/xrpc/_health")" || fail "$1 health on the host port"
done
PDS=http://127.0.0.1:$HOST_PORT_PDS
R=$(curl -fsS -m 15 -X POST "$PDS/xrpc/com.atproto.server.createAccount" -H 'content-type: application/json' \
  -d '{"handle":"alice.pds.test","email":"alice@example.com","password":"alice-password-1"}') || fail "createAccount on the dev PDS"
DID=$(echo "$R" | json did) JWT=$(echo "$R" | json accessJwt)
TEXT="hello from the dev network in Docker $(date +%s)"
curl -fsS -m 15 -X POST "$PDS/xrpc/com.atproto.repo.createRecord" -H "authorization: Bearer $JWT" -H 'content-type: application/json' \
  -d "{\"repo\":\"$DID\",\"collection\":\"app.bsky.feed.post\",\"record\":{\"\$type\":\"app.bsky.feed.post\",\"text\":\"$TEXT\",\"createdAt\":\"$(date -u +%Y-%m-%dT%H:%M:%S.000Z)\"}}" >/dev/null ||
  fail "createRecord on the dev PDS"
ok=
for _ in $(seq 60); do
  if curl -fsS -m 5 "http://127.0.0.1:$HOST_PORT_APPVIEW/xrpc/app.bsky.feed.getAuthorFeed?actor=$DID" | grep -q "$TEXT"; then ok=1; break; fi
  sleep 1
done
[ -n "$ok" ] || fail "the AppView never showed the post of $DID"
echo "a post by alice.pds.test ($DID) made on the PDS is in the AppView's getAuthorFeed"
HANDLE=$(curl -fsS -m 5 "http://127.0.0.1:$HOST_PORT_APPVIEW/xrpc/app.bsky.actor.getProfile?actor=$DID" | json handle)
[ "$HANDLE" = alice.pds.test ] || fail "the AppView's profile handle is '$HANDLE', not alice.pds.test"
"${DEV[@]}" down -v 2>&1 | grep -v '^Stopping\|^Removing' || true

# ---------------------------------------------------------------- 5. the production PDS, by the README
step "production PDS: README \"Run your own PDS\" in deploy/pds (local CA, no DNS)"
for f in pds.env caddy.env; do [ -f "$REPO/deploy/pds/$f" ] && mv "$REPO/deploy/pds/$f" "$RUN/saved-$f"; done
export COMPOSE_PROJECT_NAME=$PDS_PROJECT COMPOSE_FILE=$SELFHOST_FILES PUBLISH_ADDRESS=127.0.0.1
export HTTP_PORT HTTPS_PORT
HTTP_PORT=$(freeport) HTTPS_PORT=$(freeport)
# the stand-in relay for `stratos pds request-crawl`: records what it is asked
node -e '
  const http = require("http"), fs = require("fs")
  const s = http.createServer((req, res) => { let b = ""; req.on("data", (d) => (b += d)).on("end", () => {
    fs.appendFileSync(process.argv[1], req.method + " " + req.url + " " + b + "\n"); res.setHeader("content-type", "application/json"); res.end("{}") }) })
  s.listen(0, "127.0.0.1", () => fs.writeFileSync(process.argv[2], String(s.address().port)))' "$RUN/crawl.log" "$RUN/crawl.port" &
RECORDER_PID=$!
for _ in $(seq 50); do [ -s "$RUN/crawl.port" ] && break; sleep 0.1; done
CRAWL_PORT=$(cat "$RUN/crawl.port")

# The README's commands: the shell blocks of "Run your own PDS" after the machine set-up (apt-get, git clone,
# pnpm install/build: .ci/run and step 1 did those), run as written, in one shell, from the checkout. Two
# substitutions: `pds init` gets --hostname/--admin-email (no terminal to answer on; the README says so), and
# hooks run after two lines (marked ## below): after `docker-compose up`, the local CA and the DNS stand-in
# are set up for curl and Node; after the env file is read, PDS_CRAWLERS points at the stand-in relay.
extract_readme() {
  awk '
    /^## / { insec = ($0 == "## Run your own PDS") }
    insec && /^```sh$/ { inblock = 1; next }
    insec && inblock && /^```$/ { inblock = 0; next }
    insec && inblock { print }
  ' "$REPO/README.md"
}
extract_readme >"$RUN/readme-commands.sh"
[ -s "$RUN/readme-commands.sh" ] || fail "no shell blocks found in README \"Run your own PDS\""
{
  cat <<EOF
set -euo pipefail
cd "$REPO"
after_up() { # the local CA and the DNS stand-in (not in the README: a real host has DNS and Let's Encrypt)
  local i
  for i in \$(seq 60); do docker-compose exec -T caddy cat /data/caddy/pki/authorities/local/root.crt >"$RUN/ca.crt" 2>/dev/null && break; sleep 1; done
  [ -s "$RUN/ca.crt" ] || { echo "Caddy's local CA never appeared"; return 1; }
  mkdir -p "$RUN/curl"
  { echo 'cacert = "$RUN/ca.crt"'; for n in $HOST alice.$HOST bob.$HOST; do echo "connect-to = \$n:443:127.0.0.1:$HTTPS_PORT"; done; } >"$RUN/curl/.curlrc"
  export CURL_HOME="$RUN/curl"
  cat "$RUN/ca.crt" \${NODE_EXTRA_CA_CERTS:+"\$NODE_EXTRA_CA_CERTS"} >"$RUN/node-ca.crt"
  export NODE_EXTRA_CA_CERTS="$RUN/node-ca.crt"
  export NODE_OPTIONS="--require $HERE/connect-to.cjs"
  export STRATOS_CONNECT_TO="$HOST:443=127.0.0.1:$HTTPS_PORT,alice.$HOST:443=127.0.0.1:$HTTPS_PORT"
  # Caddy starts once the PDS is healthy; give it its first certificate before the README's curl
  for i in \$(seq 60); do curl -fsS -m 5 -o /dev/null https://$HOST/xrpc/_health 2>/dev/null && return 0; sleep 1; done
  echo "no answer from https://$HOST/xrpc/_health through Caddy"; return 1
}
after_env() { export PDS_CRAWLERS=http://127.0.0.1:$CRAWL_PORT; } # the stand-in relay instead of bsky.network
EOF
  started=
  while IFS= read -r line; do
    case $line in *"stratos pds init"*) started=1 ;; esac
    [ -n "$started" ] || { printf '# (machine set-up, done by CI) %s\n' "$line"; continue; }
    case $line in
      *"stratos pds init"*)
        line=${line/pds init deploy\/pds\/pds.env/pds init deploy/pds/pds.env --hostname $HOST --admin-email admin@example.com} ;;
    esac
    printf 'printf "+ %%s\\n" %q\n%s\n' "$line" "$line"
    case $line in
      *"docker-compose up"*) echo 'after_up ##' ;;
      *". ./pds.env"*) echo 'after_env ##' ;;
    esac
  done <"$RUN/readme-commands.sh"
} >"$RUN/readme-run.sh"
grep -q 'after_up ##' "$RUN/readme-run.sh" || fail "the README has no 'docker-compose up' line to run"
grep -q "pds init deploy/pds/pds.env --hostname $HOST" "$RUN/readme-run.sh" || fail "the README has no 'pds init deploy/pds/pds.env' line"
bash "$RUN/readme-run.sh" 2>&1 | tee "$RUN/readme-run.log" || fail "a README command failed (script: $RUN/readme-run.sh)"

step "production PDS: checks through Caddy over HTTPS"
export CURL_HOME=$RUN/curl
# the README's `account create` printed the account and its generated password
sed -n '/^+ pnpm -s stratos account create/,/^+ [^p]/p' "$RUN/readme-run.log" >"$RUN/account-create.out"
A_DID=$(awk '$1 == "did" { print $2 }' "$RUN/account-create.out" | head -1)
A_HANDLE=$(awk '$1 == "handle" { print $2 }' "$RUN/account-create.out" | head -1)
A_PASSWORD=$(awk '$1 == "password" { print $2 }' "$RUN/account-create.out" | head -1)
[ -n "$A_DID" ] && [ -n "$A_PASSWORD" ] || fail "the README's account create printed no did/password"
[ "$A_HANDLE" = "alice.$HOST" ] || fail "account handle '$A_HANDLE'"
H=$(curl -fsS -m 10 "https://$HOST/xrpc/_health") || fail "GET https://$HOST/xrpc/_health"
[ -n "$(echo "$H" | json version)" ] || fail "health without a version: $H"
echo "https://$HOST/xrpc/_health (through Caddy, certificate from the local CA) -> $H"
# the handle's certificate is issued on first use (Caddy asked /tls-check) and the handle resolves over HTTPS
WK=$(curl -fsS -m 20 "https://alice.$HOST/.well-known/atproto-did") || fail "https://alice.$HOST/.well-known/atproto-did"
[ "$WK" = "$A_DID" ] || fail "alice.$HOST/.well-known/atproto-did says '$WK', not $A_DID"
echo "https://alice.$HOST/.well-known/atproto-did -> $WK (on-demand certificate)"
# the ask endpoint: 200 for the host name and existing handles, 404 for a free handle, 400 for other names; no certificate for bob
for d in "$HOST 200" "alice.$HOST 200" "bob.$HOST 404" "example.org 400"; do
  set -- $d
  code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "https://$HOST/tls-check?domain=$1")
  [ "$code" = "$2" ] || fail "/tls-check?domain=$1 answered $code, expected $2"
  echo "/tls-check?domain=$1 -> $code"
done
if curl -sS -m 10 -o /dev/null "https://bob.$HOST/xrpc/_health" 2>/dev/null; then fail "bob.$HOST (no such account) got a certificate"; fi
echo "https://bob.$HOST: no certificate (no such account)"
# sign in as the README's account and post, through Caddy
S=$(curl -fsS -m 15 -X POST "https://$HOST/xrpc/com.atproto.server.createSession" -H 'content-type: application/json' \
  -d "{\"identifier\":\"alice.$HOST\",\"password\":\"$A_PASSWORD\"}") || fail "createSession through Caddy"
JWT=$(echo "$S" | json accessJwt)
TEXT="hello from my own PDS in Docker $(date +%s)"
P=$(curl -fsS -m 15 -X POST "https://$HOST/xrpc/com.atproto.repo.createRecord" -H "authorization: Bearer $JWT" -H 'content-type: application/json' \
  -d "{\"repo\":\"$A_DID\",\"collection\":\"app.bsky.feed.post\",\"record\":{\"text\":\"$TEXT\",\"createdAt\":\"$(date -u +%Y-%m-%dT%H:%M:%S.000Z)\"}}") ||
  fail "createRecord through Caddy"
URI=$(echo "$P" | json uri)
G=$(curl -fsS -m 10 "https://$HOST/xrpc/com.atproto.repo.getRecord?repo=$A_DID&collection=app.bsky.feed.post&rkey=${URI##*/}") || fail "getRecord"
echo "$G" | grep -q "$TEXT" || fail "getRecord does not return the post: $G"
echo "posted $URI through Caddy and read it back"
# request-crawl (the README's last line) reached the stand-in relay with the host name
grep -q "POST /xrpc/com.atproto.sync.requestCrawl {\"hostname\":\"$HOST\"}" "$RUN/crawl.log" ||
  fail "the stand-in relay got no requestCrawl for $HOST: $(cat "$RUN/crawl.log" 2>/dev/null)"
echo "request-crawl reached the relay: $(cat "$RUN/crawl.log")"
# the README's backup (run above, inside the container) is there with its manifest
(cd "$REPO/deploy/pds" && docker-compose exec -T pds sh -c 'ls /data/backups/*/stratos-pds-backup.json') >/dev/null ||
  fail "no backup manifest in the PDS's data volume"
echo "backup manifest present in the pds-data volume"
# only Caddy publishes, on the addresses asked for
PUB=$(docker ps --filter "label=com.docker.compose.project=$PDS_PROJECT" --format '{{.Names}} {{.Ports}}' | grep -- '->' || true)
echo "$PUB"
echo "$PUB" | grep -qv caddy && fail "a service other than Caddy publishes a port: $PUB"
echo "$PUB" | grep -q '0.0.0.0' && fail "a port is published on 0.0.0.0 in the test: $PUB"
(cd "$REPO/deploy/pds" && docker-compose down -v 2>&1 | grep -v '^Stopping\|^Removing' || true)
step "done"
