#!/usr/bin/env bash
# Build a real Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) plus kwok from the Go module proxy
# into a cache directory outside the repo. Idempotent: each step is skipped
# when its output already exists. See README.md next to this file.
#
# Env overrides:
#   OPSFLOW_CACHE   cache root (default: $HOME/.cache/opsflow)
#   ETCD_VERSION    default v3.6.16
#   K8S_VERSION     default v1.34.4
#   KWOK_VERSION    default v0.8.0
#   GO              go binary (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"

CACHE_ROOT="${OPSFLOW_CACHE:-$HOME/.cache/opsflow}"
KDIR="$CACHE_ROOT/kubernetes"
SRC="$KDIR/src"   # wrapper modules (outside the repo)

if [[ -z "${GO:-}" ]]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
fi
[[ -x "$GO" ]] || { echo "go not found (set GO=...)" >&2; exit 1; }

# Use the installed toolchain, never download another one; static binaries;
# 2 parallel build jobs. Go build/module caches stay in their default places.
export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS="-p=2 -buildvcs=false -trimpath"

NICE=(nice -n 19)
command -v ionice >/dev/null 2>&1 && NICE=(ionice -c 3 nice -n 19)
gorun() { "${NICE[@]}" "$GO" "$@"; }

log() { printf '[k8s-install %(%H:%M:%S)T] %s\n' -1 "$*"; }
elapsed() { local s=$(( SECONDS - $1 )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

mkdir -p "$KDIR" "$SRC"
log "go: $("$GO" version); cache: $KDIR"

# ---------------------------------------------------------------- etcd ----
step_etcd() {
  local out="$KDIR/etcd-$ETCD_VERSION" t0=$SECONDS
  if [[ -x "$out/etcd" ]]; then
    log "etcd $ETCD_VERSION: present, skipped -> $out/etcd"; return
  fi
  log "etcd $ETCD_VERSION: building"
  local w="$SRC/etcd-$ETCD_VERSION"
  rm -rf "$w"; mkdir -p "$w" "$out"
  cat >"$w/go.mod" <<MOD
module opsflow.local/etcdwrapper

go 1.26.0
MOD
  cat >"$w/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (
    cd "$w"
    gorun get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    gorun mod tidy
    gorun build -ldflags "-s -w" -o "$out/etcd.tmp" .
  )
  mv -f "$out/etcd.tmp" "$out/etcd"
  log "etcd $ETCD_VERSION: built in $(elapsed $t0) -> $out/etcd"
  "$out/etcd" --version | sed 's/^/    /'
}

# ---------------------------------------------------------- kubernetes ----
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler)

step_k8s() {
  local out="$KDIR/k8s-$K8S_VERSION" t0=$SECONDS c missing=0
  for c in "${K8S_CMDS[@]}"; do [[ -x "$out/$c" ]] || missing=1; done
  if (( ! missing )); then
    for c in "${K8S_CMDS[@]}"; do log "k8s $K8S_VERSION: present, skipped -> $out/$c"; done
    return
  fi
  log "k8s $K8S_VERSION: building ${K8S_CMDS[*]}"
  local ver="${K8S_VERSION#v}" major minor patch
  IFS=. read -r major minor patch <<<"$ver"
  local staging_ver="v0.$minor.$patch"
  local w="$SRC/k8s-$K8S_VERSION"
  rm -rf "$w"; mkdir -p "$w" "$out"

  # The version's own go.mod: every `k8s.io/<name> v0.0.0` requirement is a
  # staging module, replaced there by ./staging/src/...; we replace it by the
  # published v0.MINOR.PATCH instead.
  local kmod
  kmod="$(cd "$w" && gorun mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
          | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$kmod" ]] || { echo "cannot download go.mod of k8s.io/kubernetes@$K8S_VERSION" >&2; return 1; }
  local goline staging
  goline="$(awk '$1=="go"{print $2; exit}' "$kmod")"
  mapfile -t staging < <(sed -E 's#//.*$##' "$kmod" \
    | awk '{ if ($1=="require") { $1=""; $0=substr($0,2) } }
           $1 ~ /^k8s\.io\/[A-Za-z0-9._-]+$/ && $2=="v0.0.0" { print $1 }' | sort -u)
  (( ${#staging[@]} > 0 )) || { echo "no staging modules found in $kmod" >&2; return 1; }
  log "k8s $K8S_VERSION: go $goline; ${#staging[@]} staging modules -> $staging_ver"

  {
    echo "module opsflow.local/k8swrapper"
    echo
    echo "go $goline"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    local m; for m in "${staging[@]}"; do echo "	$m => $m $staging_ver"; done
    echo ")"
  } >"$w/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    for c in "${K8S_CMDS[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
    echo ")"
  } >"$w/tools.go"

  local ldflags="-s -w" pkg
  local build_date; build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done

  (
    cd "$w"
    gorun mod tidy
    for c in "${K8S_CMDS[@]}"; do
      if [[ -x "$out/$c" ]]; then log "k8s $K8S_VERSION: $c present, skipped"; continue; fi
      local tc=$SECONDS
      gorun build -ldflags "$ldflags" -o "$out/$c.tmp" "k8s.io/kubernetes/cmd/$c"
      mv -f "$out/$c.tmp" "$out/$c"
      log "k8s $K8S_VERSION: $c built in $(elapsed $tc) -> $out/$c"
    done
  )
  log "k8s $K8S_VERSION: all built in $(elapsed $t0)"
  "$out/kube-apiserver" --version | sed 's/^/    /'
}

# ---------------------------------------------------------------- kwok ----
step_kwok() {
  local out="$KDIR/kwok-$KWOK_VERSION" t0=$SECONDS
  if [[ -x "$out/kwok" && -d "$out/stage" ]]; then
    log "kwok $KWOK_VERSION: present, skipped -> $out/kwok"; return
  fi
  log "kwok $KWOK_VERSION: building"
  mkdir -p "$out"
  local tmp; tmp="$(mktemp -d)"
  (
    cd "$tmp"   # outside any module
    GOBIN="$tmp/bin" gorun install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  )
  mv -f "$tmp/bin/kwok" "$out/kwok"
  # Stage configs shipped by the module: node/fast, pod/fast, chaos stages, ...
  local moddir
  moddir="$(cd "$tmp" && gorun mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
            | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  rm -rf "$tmp"
  [[ -d "$moddir/kustomize/stage" ]] || { echo "no kustomize/stage in $moddir" >&2; return 1; }
  rm -rf "$out/stage.tmp"; mkdir -p "$out/stage.tmp"
  local f rel
  while IFS= read -r f; do
    rel="${f#"$moddir/kustomize/stage/"}"
    mkdir -p "$out/stage.tmp/$(dirname "$rel")"
    cp "$f" "$out/stage.tmp/$rel"
  done < <(find "$moddir/kustomize/stage" -type f -name '*.yaml' \
             ! -name kustomization.yaml ! -path '*/testdata/*' | sort)
  chmod -R u+w "$out/stage.tmp"
  rm -rf "$out/stage"; mv "$out/stage.tmp" "$out/stage"
  for d in node/fast pod/fast; do
    [[ -d "$out/stage/$d" ]] || { echo "kwok stage $d missing" >&2; return 1; }
  done
  log "kwok $KWOK_VERSION: built in $(elapsed $t0) -> $out/kwok"
  find "$out/stage" -name '*.yaml' | sort | sed 's/^/    stage: /'
}

T0=$SECONDS
step_etcd
step_kwok
step_k8s
log "done in $(elapsed $T0)"
# paths.env is the one place that maps the versions above to binaries:
# cluster.ts reads it instead of repeating the versions.
printf '%s\n' \
  "ETCD=$KDIR/etcd-$ETCD_VERSION/etcd" \
  "KUBE_APISERVER=$KDIR/k8s-$K8S_VERSION/kube-apiserver" \
  "KUBE_CONTROLLER_MANAGER=$KDIR/k8s-$K8S_VERSION/kube-controller-manager" \
  "KUBE_SCHEDULER=$KDIR/k8s-$K8S_VERSION/kube-scheduler" \
  "KWOK=$KDIR/kwok-$KWOK_VERSION/kwok" \
  "KWOK_STAGES=$KDIR/kwok-$KWOK_VERSION/stage" >"$KDIR/paths.env.tmp"
mv -f "$KDIR/paths.env.tmp" "$KDIR/paths.env"
cat "$KDIR/paths.env"
