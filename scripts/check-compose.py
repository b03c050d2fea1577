#!/usr/bin/env python3
"""Structural check of docker-compose.yml and services/*/Dockerfile (called by scripts/check-compose.sh).

Prints one line per problem and exits 1 if there is any; prints a summary and exits 0 otherwise.
"""
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICES = {"plc": 2582, "pds": 2583, "relay": 2584, "appview": 2585, "labeler": 2586}
ENV_PREFIX = {"plc": "PLC_", "pds": "PDS_", "relay": "RELAY_", "appview": "APPVIEW_", "labeler": "LABELER_"}
# services that only run with their own profile (the labeler needs its account's DID first)
PROFILED = {"labeler": "labeler"}

problems = []


def problem(msg):
    problems.append(msg)


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def env_dict(env):
    if env is None:
        return {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, _, v = str(item).partition("=")
            out[k] = v
        return out
    return dict(env)


def port_targets(ports):
    pairs = []
    for p in ports or []:
        if isinstance(p, dict):
            pairs.append((str(p.get("published")), str(p.get("target"))))
        else:
            # "${VAR:-default}" as compose interpolates it when VAR is unset
            parts = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", str(p)).split(":")
            pairs.append((parts[-2] if len(parts) > 1 else parts[-1], parts[-1]))
    return pairs


def check_compose(path):
    doc = yaml.safe_load(read(path))
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        problem(f"{path}: no services map")
        return
    services = doc["services"]
    for name, port in SERVICES.items():
        svc = services.get(name)
        if not isinstance(svc, dict):
            problem(f"{path}: service '{name}' is missing")
            continue
        if name in PROFILED:
            if PROFILED[name] not in (svc.get("profiles") or []):
                problem(f"{path}: service '{name}' must be in the '{PROFILED[name]}' profile")
        elif svc.get("profiles"):
            problem(f"{path}: service '{name}' must run by default (no profiles), has {svc['profiles']}")
        build = svc.get("build") or {}
        dockerfile = build.get("dockerfile") if isinstance(build, dict) else None
        if dockerfile != f"services/{name}/Dockerfile":
            problem(f"{path}: service '{name}' must build services/{name}/Dockerfile (has {dockerfile!r})")
        elif not os.path.isfile(os.path.join(ROOT, dockerfile)):
            problem(f"{path}: {dockerfile} does not exist")
        if (str(port), str(port)) not in port_targets(svc.get("ports")):
            problem(f"{path}: service '{name}' must publish {port}:{port}")
        vols = [str(v) for v in svc.get("volumes") or []]
        if not any(v.endswith(":/data") for v in vols):
            problem(f"{path}: service '{name}' must mount a volume at /data")
        env = env_dict(svc.get("environment"))
        port_var = f"{ENV_PREFIX[name]}PORT"
        if str(env.get(port_var)) != str(port):
            problem(f"{path}: service '{name}' must set {port_var}={port}")
        # every service variable set here must be one the service reads
        config_path = f"services/{name}/src/config.ts"
        if os.path.isfile(os.path.join(ROOT, config_path)):
            config = read(config_path)
            for key in env:
                if key.startswith(ENV_PREFIX[name]) and f"'{key}'" not in config and f'"{key}"' not in config:
                    problem(f"{path}: service '{name}' sets {key}, which {config_path} does not read")
        else:
            print(f"check-compose: note: {config_path} not found, variable names of '{name}' not checked")
        for dep in (svc.get("depends_on") or {}):
            if dep not in services:
                problem(f"{path}: service '{name}' depends on unknown service '{dep}'")
            elif services[dep].get("profiles") and name not in PROFILED:
                problem(f"{path}: service '{name}' depends on '{dep}', which only runs with a profile")

    pg = services.get("postgres")
    if not isinstance(pg, dict):
        problem(f"{path}: service 'postgres' (profile postgres) is missing")
    else:
        if "postgres" not in (pg.get("profiles") or []):
            problem(f"{path}: service 'postgres' must be in the 'postgres' profile")
        if not pg.get("healthcheck"):
            problem(f"{path}: service 'postgres' needs a healthcheck")
    appview_env = env_dict((services.get("appview") or {}).get("environment"))
    if "APPVIEW_DB_URL" not in appview_env:
        problem(f"{path}: appview must pass APPVIEW_DB_URL (empty = SQLite, postgres://... with the profile)")

    declared = set((doc.get("volumes") or {}).keys())
    for name, svc in services.items():
        for v in (svc or {}).get("volumes") or []:
            src = str(v).split(":")[0]
            if not src.startswith((".", "/")) and src not in declared:
                problem(f"{path}: service '{name}' uses volume '{src}', which is not declared")


def workspace_packages():
    """packages/* and services/* with a package.json (pnpm-workspace.yaml's globs)."""
    out = []
    for top in ("packages", "services"):
        for d in sorted(os.listdir(os.path.join(ROOT, top))):
            if os.path.isfile(os.path.join(ROOT, top, d, "package.json")):
                out.append(f"{top}/{d}")
    return out


def check_dockerfile(name, port):
    path = f"services/{name}/Dockerfile"
    full = os.path.join(ROOT, path)
    if not os.path.isfile(full):
        problem(f"{path}: missing")
        return
    text = read(path)
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    if len(stages) < 2:
        problem(f"{path}: must be a multi-stage build (build + runtime)")
    elif not stages[-1].startswith("node:20-bookworm-slim"):
        problem(f"{path}: the runtime stage must be node:20-bookworm-slim (is {stages[-1]})")
    runtime = text[text.rfind("\nFROM "):]
    users = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    if not users or users[-1] in ("root", "0"):
        problem(f"{path}: the runtime stage must run as a non-root USER")
    if not re.search(r"^VOLUME\s+\[?\"?/data", runtime, re.M):
        problem(f"{path}: needs VOLUME /data")
    if not re.search(rf"^EXPOSE\s+{port}\b", runtime, re.M):
        problem(f"{path}: needs EXPOSE {port}")
    if re.search(r"^#\s*syntax=", text, re.M):
        problem(f"{path}: no '# syntax=' line (BuildKit would pull that frontend from Docker Hub)")
    # the dependency layer (native modules compile there) is built from the package.json files alone, so that a
    # source change does not redo it: every workspace package must be copied before the first install
    first_install = text.find("pnpm install")
    for pkg in workspace_packages():
        if not re.search(rf"^COPY\s+{re.escape(pkg)}/package\.json\s", text[:first_install], re.M):
            problem(f"{path}: copy {pkg}/package.json before the first `pnpm install` (a workspace package)")
    if not re.search(r"^HEALTHCHECK\b.*(\n\s+.*)*?/xrpc/_health", runtime, re.M):
        problem(f"{path}: needs a HEALTHCHECK on /xrpc/_health")
    if not re.search(r"^CMD\s", runtime, re.M):
        problem(f"{path}: needs a CMD")
    if f"@stratos/{name}" not in text:
        problem(f"{path}: should build and deploy @stratos/{name}")


def check_production_pds(path="deploy/pds/compose.yaml"):
    """The production PDS compose: only Caddy publishes, and only 80 and 443; the PDS reads pds.env."""
    doc = yaml.safe_load(read(path))
    services = (doc or {}).get("services") or {}
    if set(services) != {"pds", "caddy"}:
        problem(f"{path}: expected the services pds and caddy, got {sorted(services)}")
        return
    if services["pds"].get("ports"):
        problem(f"{path}: the PDS must not publish ports (Caddy is its only way in)")
    published = sorted(t for _, t in port_targets(services["caddy"].get("ports")))
    if published != ["443", "80"]:
        problem(f"{path}: Caddy must publish exactly 80 and 443, got {published}")
    if services["pds"].get("env_file") != "pds.env":
        problem(f"{path}: the PDS must read pds.env (written by `stratos pds init`)")
    if services["caddy"].get("env_file") != "caddy.env":
        problem(f"{path}: Caddy must read caddy.env (host name, email), not the PDS's secrets in pds.env")
    caddyfile = read("deploy/pds/Caddyfile")
    if "/tls-check" not in caddyfile or "on_demand" not in caddyfile:
        problem("deploy/pds/Caddyfile: on-demand TLS must ask the PDS's /tls-check")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "docker-compose.yml"
    check_compose(path)
    check_production_pds()
    for name, port in SERVICES.items():
        check_dockerfile(name, port)
    if not os.path.isfile(os.path.join(ROOT, ".dockerignore")):
        problem(".dockerignore is missing (node_modules would be sent into the build)")
    if problems:
        for p in problems:
            print(f"check-compose: {p}", file=sys.stderr)
        print(f"check-compose: {len(problems)} problem(s)", file=sys.stderr)
        sys.exit(1)
    print(f"check-compose: {path} and {len(SERVICES)} Dockerfiles: ok")


if __name__ == "__main__":
    main()
