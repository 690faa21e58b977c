#!/usr/bin/env bash
set -euo pipefail
# Smoke test of the binaries built by install.sh: etcd + kube-apiserver +
# controller-manager + scheduler on free loopback ports, temp dirs removed on exit.
# Needs kubectl, openssl, python3, curl.
PATHS="${OPSFLOW_CACHE:-$HOME/.cache/opsflow}/kubernetes/paths.env"   # written by install.sh
[[ -f "$PATHS" ]] || { echo "$PATHS missing: run install.sh first" >&2; exit 1; }
source "$PATHS"
T=$(mktemp -d "${TMPDIR:-/tmp}/k8s-smoke.XXXXXX"); echo "tmp=$T"
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
EP=$(freeport); PP=$(freeport); AP=$(freeport); CP=$(freeport); SP=$(freeport)
echo "ports etcd=$EP peer=$PP apiserver=$AP kcm=$CP sched=$SP"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; rm -rf "$T"; echo cleaned; }
trap cleanup EXIT
"$ETCD" --name smoke --data-dir "$T/etcd" \
  --listen-client-urls "http://127.0.0.1:$EP" --advertise-client-urls "http://127.0.0.1:$EP" \
  --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
  --initial-cluster "smoke=http://127.0.0.1:$PP" --listen-metrics-urls "" \
  --unsafe-no-fsync --log-level warn >"$T/etcd.log" 2>&1 & pids+=($!)
for i in $(seq 50); do curl -sf "http://127.0.0.1:$EP/health" >/dev/null && break; sleep 0.2; done
curl -s "http://127.0.0.1:$EP/health"; echo
openssl genrsa -out "$T/sa.key" 2048 2>/dev/null; openssl rsa -in "$T/sa.key" -pubout -out "$T/sa.pub" 2>/dev/null
TOKEN=$(openssl rand -hex 16)
echo "$TOKEN,admin,admin,system:masters" > "$T/tokens.csv"
S=$(date +%s)
"$KUBE_APISERVER" --etcd-servers "http://127.0.0.1:$EP" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
  --secure-port="$AP" --cert-dir="$T/certs" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$T/sa.pub" --service-account-signing-key-file="$T/sa.key" \
  --authorization-mode=RBAC --token-auth-file="$T/tokens.csv" --service-cluster-ip-range=10.0.0.0/24 \
  >"$T/apiserver.log" 2>&1 & pids+=($!)
KC=(kubectl --server "https://127.0.0.1:$AP" --insecure-skip-tls-verify --token "$TOKEN")
for i in $(seq 150); do curl -skf -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$AP/readyz" >/dev/null && break; sleep 0.4; done
echo "apiserver ready after $(( $(date +%s) - S ))s"
curl -sk -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$AP/version"
"${KC[@]}" get ns
cat > "$T/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:$AP", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: "$TOKEN"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
KC
"$KUBE_CONTROLLER_MANAGER" --kubeconfig "$T/kubeconfig" --leader-elect=false --bind-address=127.0.0.1 --secure-port="$CP" \
  --service-account-private-key-file="$T/sa.key" --use-service-account-credentials=false \
  >"$T/kcm.log" 2>&1 & pids+=($!)
"$KUBE_SCHEDULER" --kubeconfig "$T/kubeconfig" --leader-elect=false --bind-address=127.0.0.1 --secure-port="$SP" \
  >"$T/sched.log" 2>&1 & pids+=($!)
for i in $(seq 60); do "${KC[@]}" -n default get sa default >/dev/null 2>&1 && break; sleep 0.5; done
"${KC[@]}" -n default get sa
curl -sk "https://127.0.0.1:$CP/healthz"; echo " (kcm healthz)"
curl -sk "https://127.0.0.1:$SP/healthz"; echo " (scheduler healthz)"
"${KC[@]}" create deployment smoke --image=registry.invalid/smoke --replicas=1 >/dev/null
sleep 3; "${KC[@]}" get deploy,rs,pods
for p in "${pids[@]}"; do kill -0 "$p" || { echo "process $p died"; tail -20 "$T"/*.log; exit 1; }; done
echo SMOKE OK
