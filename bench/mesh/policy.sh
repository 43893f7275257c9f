#!/usr/bin/env bash
# Traffic policy under load: the same client → server mesh (a control plane, two sidecars, the
# demo httpbin) measured three times in one run — without any DestinationRule or VirtualService
# (Istio's default retry policy applies), with a VirtualService that turns retries off, then
# with a connection pool, outlier detection, a VirtualService with retries and a timeout, and a
# weighted split over two subsets. wrk drives plain HTTP through the client sidecar's forward
# proxy. See docs/benchmarks.md.
#
#   bench/mesh/policy.sh [--meshward PATH] [--seconds N] [--connections N] [--net 127.X]
#
# Everything listens on 127.X.0.0/16 only (default 127.213) and is stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MESHWARD=
SECONDS_PER_RUN=10
CONNECTIONS=32
NET=127.213
while (($#)); do
  case "$1" in
    --meshward) MESHWARD="$2"; shift ;;
    --seconds) SECONDS_PER_RUN="$2"; shift ;;
    --connections) CONNECTIONS="$2"; shift ;;
    --net) NET="$2"; shift ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "policy.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ "$NET" =~ ^127\.[0-9]{1,3}$ ]] || { echo "policy.sh: --net must be 127.X" >&2; exit 2; }
command -v wrk >/dev/null || { echo "policy.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }
if [[ -z "$MESHWARD" ]]; then
  cargo build --release -q -p meshward --manifest-path "$ROOT/Cargo.toml"
  MESHWARD="$ROOT/target/release/meshward"
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
# No process started here outlives this bound, even if this script is killed.
LIFETIME=$((SECONDS_PER_RUN * 4 + 120))
start() { timeout "$LIFETIME" "$@" >>"$WORK/log" 2>&1 & PIDS+=($!); }

export MESHWARD_CONTEXT="$WORK/context.json"
start "$MESHWARD" control-plane --data-dir "$WORK/data" \
  --grpc-addr "$NET.0.1:15012" --http-addr "$NET.0.1:15014"
for _ in $(seq 100); do [[ -f "$MESHWARD_CONTEXT" ]] && break; sleep 0.1; done

cat >"$WORK/mesh.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: bench, labels: {istio-injection: enabled}}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: client, namespace: bench, labels: {app: client}}
spec: {serviceAccount: client, address: "$NET.1.1"}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: server-v1, namespace: bench, labels: {app: server, version: v1}}
spec: {serviceAccount: server, address: "$NET.1.2", ports: [{port: 8080, protocol: HTTP}]}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: server-v2, namespace: bench, labels: {app: server, version: v2}}
spec: {serviceAccount: server, address: "$NET.1.3", ports: [{port: 8080, protocol: HTTP}]}
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: bench}
spec: {selector: {app: server}, ports: [{port: 8080}]}
EOF
cat >"$WORK/no-retries.yaml" <<EOF
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: server, namespace: bench}
spec:
  hosts: [server]
  http:
  - route: [{destination: {host: server}}]
    retries: {attempts: 0}
EOF
cat >"$WORK/policy.yaml" <<EOF
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: server, namespace: bench}
spec:
  host: server
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool:
      tcp: {maxConnections: 256, connectTimeout: 1s}
      http: {http1MaxPendingRequests: 1024, http2MaxRequests: 1024, maxRetries: 64}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: server, namespace: bench}
spec:
  hosts: [server]
  http:
  - route:
    - {destination: {host: server, subset: v1}, weight: 50}
    - {destination: {host: server, subset: v2}, weight: 50}
    timeout: 5s
    retries: {attempts: 2, perTryTimeout: 2s, retryOn: "5xx,connect-failure"}
EOF
"$MESHWARD" apply -f "$WORK/mesh.yaml" >/dev/null

for host in 2 3; do start "$MESHWARD" demo httpbin --listen "$NET.2.$host:8080"; done
sidecar() { # NAME ACCOUNT HOST
  local token
  token="$("$MESHWARD" token create -n bench --service-account "$2" --ttl 5m)"
  MESHWARD_JOIN_TOKEN="$token" start "$MESHWARD" proxy --workload "$1.bench" \
    --address "$NET.1.$3" --app-address "$NET.2.$3" --control-plane "$NET.0.1:15012" \
    --control-plane-root "$WORK/data/admin/root-cert.pem"
}
sidecar client client 1
sidecar server-v1 server 2
sidecar server-v2 server 3
for host in 1 2 3; do
  for _ in $(seq 200); do
    curl -sf --max-time 2 "http://$NET.1.$host:15021/healthz/ready" >/dev/null && break
    sleep 0.1
  done
done

# wrk sends absolute-form requests to the forward proxy (what `curl -x` does).
cat >"$WORK/proxy.lua" <<'EOF'
wrk.path = "http://server.bench:8080/get"
EOF
measure() { # LABEL
  curl -sf --max-time 10 -x "http://$NET.1.1:15001" http://server.bench:8080/get >/dev/null
  local out
  out="$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/proxy.lua" \
    "http://$NET.1.1:15001")"
  local rps p50 p99 errors
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
  p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
  errors="$(awk '/Non-2xx/ {print $5}' <<<"$out")"
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$rps" "$p50" "$p99" "${errors:-0}"
}

echo "| mesh | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|"
measure "no DestinationRule, no VirtualService (baseline: Istio's default retries)"
apply() { # FILE
  "$MESHWARD" apply -f "$1" >/dev/null
  # The sidecar acknowledges the new view within a second.
  sleep 2
}
apply "$WORK/no-retries.yaml"
measure "a VirtualService with retries off"
apply "$WORK/policy.yaml"
measure "pool + outlier detection + 50/50 subsets + retries + timeout"
