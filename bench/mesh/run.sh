#!/usr/bin/env bash
# The proxy benchmark: direct, an HAProxy pair, an nginx pair and a Meshward pair in front of
# the same app, on loopback only. See docs/benchmarks.md.
#
#   bench/mesh/run.sh            full set, 3 runs per contender (about 15 minutes)
#   bench/mesh/run.sh --quick    1 short run per contender (about 1 minute), for development
#   bench/mesh/run.sh --smoke    the shortest runs, only to check that everything works
#
# Options: --runs N, --only "direct meshward", --net 127.X (the /16 used, default 127.211),
# --meshward PATH --load PATH (use these binaries, do not build), --no-install, --out DIR
# (keep the work directory there), --perf (CPU profiles of each pair in the last run, with
# `perf`; summaries in the work directory).
#
# Every process it starts listens on 127.X.0.0/16 only, is bounded by `timeout`, and is stopped
# by PID when the script ends, fails or is interrupted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MODE=full
RUNS=
ONLY="direct haproxy nginx meshward"
NET=127.211
MESHWARD=
LOAD=
INSTALL=1
OUT=
PERF=0
while (($#)); do
  case "$1" in
    --quick) MODE=quick ;;
    --smoke) MODE=smoke ;;
    --full) MODE=full ;;
    --runs) RUNS="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    --net) NET="$2"; shift ;;
    --meshward) MESHWARD="$2"; shift ;;
    --load) LOAD="$2"; shift ;;
    --no-install) INSTALL=0 ;;
    --out) OUT="$2"; shift ;;
    --perf) PERF=1 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
export PATH="$PATH:/usr/sbin:/sbin"
[[ "$NET" =~ ^127\.[0-9]{1,3}$ ]] || { echo "run.sh: --net must be 127.X" >&2; exit 2; }

# Durations in seconds; IDLE_CONNS connections are held open for the per-connection memory.
case "$MODE" in
  full) RUNS=${RUNS:-3} WARM=2 RATE_S=10 WRK_S=8 CONN_S=6 BULK_S=6 BULK_MB=64 IDLE_CONNS=2000 ;;
  quick) RUNS=${RUNS:-1} WARM=1 RATE_S=3 WRK_S=3 CONN_S=2 BULK_S=2 BULK_MB=16 IDLE_CONNS=500 ;;
  smoke) RUNS=${RUNS:-1} WARM=0.2 RATE_S=0.5 WRK_S=1 CONN_S=0.5 BULK_S=0.5 BULK_MB=4 IDLE_CONNS=50 ;;
esac
# No process started here may outlive this bound, even if this script is killed.
LIFETIME=$((RUNS * 4 * 120 + 120))

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools ---------------------------------------------------------------------------------
missing=()
for tool in haproxy nginx wrk curl openssl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
[[ -f $STREAM_MODULE ]] || missing+=(libnginx-mod-stream)
if ((${#missing[@]})); then
  ((INSTALL)) && [[ $(id -u) == 0 ]] || die "missing ${missing[*]}: apt-get install haproxy nginx libnginx-mod-stream wrk curl openssl"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packages only: nothing may start as a system service.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1; fi
  apt-get install -y -qq --no-install-recommends haproxy nginx libnginx-mod-stream wrk curl openssl >/dev/null
  if ((own_policy)); then rm -f "$policy"; fi
fi

if [[ -z $MESHWARD || -z $LOAD ]]; then
  log "building (release)"
  (cd "$ROOT" && cargo build --release -q -p meshward && cargo build --release -q -p meshward-bench --bin meshward-load)
  target_dir=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  MESHWARD=${MESHWARD:-$target_dir/release/meshward}
  LOAD=${LOAD:-$target_dir/release/meshward-load}
fi
[[ -x $MESHWARD && -x $LOAD ]] || die "binaries not found: $MESHWARD $LOAD"
MESHWARD=$(realpath "$MESHWARD") LOAD=$(realpath "$LOAD")

# --- work directory and process bookkeeping ------------------------------------------------
if [[ -n $OUT ]]; then mkdir -p "$OUT" && W=$(cd "$OUT" && pwd); else W=$(mktemp -d); fi
chmod 755 "$W" # nginx workers may run as another user: they read the app's files
mkdir -p "$W/tmp" "$W/www" "$W/pki" "$W/logs" "$W/bin"
# Private copies: a build in a shared target directory cannot swap them in the middle of a run.
cp "$MESHWARD" "$W/bin/meshward" && cp "$LOAD" "$W/bin/meshward-load"
MESHWARD=$W/bin/meshward LOAD=$W/bin/meshward-load
RESULTS=$W/results.tsv
: >"$RESULTS"
PIDS=()

# Stops one process started here (a `timeout` wrapper) and everything below it.
stop_tree() {
  local pid=$1 kids k i
  kids=$(descendants "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_tree "$pid"; done
  PIDS=()
  [[ -z $OUT ]] && rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

descendants() {
  local kid
  for kid in $(pgrep -P "$1" 2>/dev/null || true); do
    echo "$kid"
    descendants "$kid"
  done
}

# start NAME CMD...: runs CMD bounded by LIFETIME; sets STARTED to the wrapper's PID.
start() {
  local name=$1
  shift
  timeout -k 2 "$LIFETIME" "$@" >"$W/logs/$name.log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}
stop() {
  local pid=$1 keep=() p
  stop_tree "$pid"
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# Resident memory (KiB; or only its anonymous part with `anon`) and CPU time (ms) of a
# wrapper's processes (the wrapper excluded).
rss_kib() {
  local total=0 p v key=VmRSS
  [[ ${2:-} == anon ]] && key=RssAnon
  for p in $(descendants "$1"); do
    v=$(awk -v k="$key:" '$1 == k {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
TICK=$(getconf CLK_TCK)
cpu_ms() {
  local total=0 p v
  for p in $(descendants "$1"); do
    v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo $((total * 1000 / TICK))
}

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"; }
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

wait_http() {
  local url=$1 i
  for ((i = 0; i < 100; i++)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true) == 200 ]] && return 0
    sleep 0.1
  done
  die "no 200 from $url; logs in $W/logs"
}

# --- one PKI for everyone: ECDSA P-256, SPIFFE URI SANs ------------------------------------
# The server certificate also carries a DNS name, because nginx and HAProxy can check a DNS
# name but not a URI SAN; Meshward checks the SPIFFE ID. Every contender verifies the chain.
pki() (
  local n
  cd "$W/pki"
  openssl ecparam -name prime256v1 -genkey -noout -out root.key 2>/dev/null
  openssl req -x509 -new -key root.key -sha256 -days 2 -subj "/O=cluster.local/CN=bench root" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out root.pem 2>/dev/null
  for n in server client; do
    openssl ecparam -name prime256v1 -genkey -noout -out "$n.ec" 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in "$n.ec" -out "$n.key"
    local san="URI:spiffe://cluster.local/ns/bench/sa/$n"
    [[ $n == server ]] && san="$san,DNS:server.bench"
    openssl req -new -key "$n.key" -subj "/O=cluster.local" -out "$n.csr" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=critical,$san" >"$n.ext"
    openssl x509 -req -in "$n.csr" -CA root.pem -CAkey root.key -CAcreateserial -days 1 \
      -sha256 -extfile "$n.ext" -out "$n.pem" 2>/dev/null
    cat "$n.pem" "$n.key" >"$n.haproxy.pem"
  done
  chmod 644 ./*
  "$MESHWARD" cert verify --bundle root.pem --as client client.pem >/dev/null
  "$MESHWARD" cert verify --bundle root.pem --as server server.pem >/dev/null
)

# --- the app: nginx serving a static response and a large file -----------------------------
APP=$NET.0.10
PORT=8080
nginx_common() { # NAME
  cat <<EOF
worker_processes 1;
daemon off;
pid $W/tmp/$1.pid;
error_log $W/logs/$1.err warn;
worker_rlimit_nofile 16384;
events { worker_connections 16384; }
EOF
}
nginx_http_common() { # NAME
  cat <<EOF
  access_log off;
  client_body_temp_path $W/tmp/$1.body;
  proxy_temp_path $W/tmp/$1.proxy;
  fastcgi_temp_path $W/tmp/$1.fastcgi;
  uwsgi_temp_path $W/tmp/$1.uwsgi;
  scgi_temp_path $W/tmp/$1.scgi;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
EOF
}
start_app() {
  head -c $((BULK_MB * 1024 * 1024)) /dev/urandom >"$W/www/bulk"
  chmod 644 "$W/www/bulk"
  {
    nginx_common app
    echo "http {"
    nginx_http_common app
    cat <<EOF
  sendfile on;
  tcp_nopush on;
  server {
    listen $APP:$PORT backlog=4096;
    location = / { default_type text/plain; return 200 "hello from the benchmark app\n"; }
    location = /bulk { default_type application/octet-stream; alias $W/www/bulk; }
  }
}
EOF
  } >"$W/app.conf"
  start app nginx -e "$W/logs/app.err" -p "$W" -c "$W/app.conf"
  APP_PID=$STARTED
  wait_http "http://$APP:$PORT/"
}

# --- contenders: each sets CLIENT_PID/SERVER_PID (0 for none) and TARGET --------------------
# The client side of every pair is a TCP tunnel that originates mTLS (like Meshward's
# --upstream); the server side terminates mTLS with a required client certificate and proxies
# HTTP to the app, setting a header that names the caller (like Meshward's XFCC).
up_direct() {
  CLIENT_PID=0 SERVER_PID=0 TARGET=$APP:$PORT
}

up_haproxy() {
  local c=$NET.1.1 s=$NET.1.2 p=$W/pki
  cat >"$W/haproxy-server.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend mtls
  bind $s:$PORT ssl crt $p/server.haproxy.pem ca-file $p/root.pem verify required
  http-request set-header X-Forwarded-Client-Cert "Hash=%[ssl_c_sha1,hex]"
  default_backend app
backend app
  server app $APP:$PORT
EOF
  cat >"$W/haproxy-client.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s
frontend out
  bind $c:9000
  default_backend mesh
backend mesh
  server s $s:$PORT ssl crt $p/client.haproxy.pem ca-file $p/root.pem verify required verifyhost server.bench
EOF
  start haproxy-server haproxy -db -f "$W/haproxy-server.cfg"
  SERVER_PID=$STARTED
  start haproxy-client haproxy -db -f "$W/haproxy-client.cfg"
  CLIENT_PID=$STARTED
  TARGET=$c:9000
}

up_nginx() {
  local c=$NET.2.1 s=$NET.2.2 p=$W/pki
  {
    nginx_common nginx-server
    echo "http {"
    nginx_http_common nginx-server
    cat <<EOF
  upstream app { server $APP:$PORT; keepalive 64; keepalive_requests 1000000; keepalive_timeout 300s; }
  server {
    listen $s:$PORT ssl backlog=4096;
    ssl_certificate $p/server.pem;
    ssl_certificate_key $p/server.key;
    ssl_protocols TLSv1.3;
    ssl_client_certificate $p/root.pem;
    ssl_verify_client on;
    ssl_verify_depth 2;
    ssl_session_cache shared:SSL:10m;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-Client-Cert "Hash=\$ssl_client_fingerprint";
      # Buffer in memory only: no temporary files for large responses.
      proxy_max_temp_file_size 0;
    }
  }
}
EOF
  } >"$W/nginx-server.conf"
  {
    echo "load_module $STREAM_MODULE;"
    nginx_common nginx-client
    cat <<EOF
stream {
  server {
    listen $c:9000 backlog=4096;
    proxy_pass $s:$PORT;
    proxy_ssl on;
    proxy_ssl_protocols TLSv1.3;
    proxy_ssl_certificate $p/client.pem;
    proxy_ssl_certificate_key $p/client.key;
    proxy_ssl_trusted_certificate $p/root.pem;
    proxy_ssl_verify on;
    proxy_ssl_verify_depth 2;
    proxy_ssl_name server.bench;
    proxy_ssl_session_reuse on;
  }
}
EOF
  } >"$W/nginx-client.conf"
  start nginx-server nginx -e "$W/logs/nginx-server.err" -p "$W" -c "$W/nginx-server.conf"
  SERVER_PID=$STARTED
  start nginx-client nginx -e "$W/logs/nginx-client.err" -p "$W" -c "$W/nginx-client.conf"
  CLIENT_PID=$STARTED
  TARGET=$c:9000
}

up_meshward() {
  local c=$NET.3.1 s=$NET.3.2 p=$W/pki
  # One runtime worker thread each, like the one worker of HAProxy and nginx.
  export TOKIO_WORKER_THREADS=1 RUST_LOG=warn
  start meshward-server "$MESHWARD" proxy --address "$s" --app-address "$APP" \
    --cert "$p/server.pem" --key "$p/server.key" --bundle "$p/root.pem" \
    --inbound "$PORT=strict" --admin-port 0 --outbound-port 0 --ready-port 0
  SERVER_PID=$STARTED
  start meshward-client "$MESHWARD" proxy --address "$c" --app-address "$APP" \
    --cert "$p/client.pem" --key "$p/client.key" --bundle "$p/root.pem" \
    --upstream "$c:9000=$s:$PORT,spiffe://cluster.local/ns/bench/sa/server" \
    --admin-port 0 --outbound-port 0 --ready-port 0
  CLIENT_PID=$STARTED
  unset TOKIO_WORKER_THREADS RUST_LOG
  TARGET=$c:9000
}

# --- the measurements ------------------------------------------------------------------------
proxies() { for p in $CLIENT_PID $SERVER_PID; do ((p)) && echo "$p"; done; true; }
pair_cpu_ms() {
  local t=0 p
  for p in $(proxies); do t=$((t + $(cpu_ms "$p"))); done
  echo "$t"
}

measure() { # CONTENDER
  local c=$1 out t0 t1 before after sent s
  local bound=$((LIFETIME / 2))
  "up_$c"
  wait_http "http://$TARGET/"
  # Warm up: connections, TLS session caches, allocators.
  timeout "$bound" "$LOAD" rate --target "$TARGET" --rate 500 --duration 0.5 --warmup 0 --connections 8 >/dev/null

  if ((CLIENT_PID)); then
    record "$c" rss_idle_client_kib "$(rss_kib "$CLIENT_PID")"
    record "$c" rss_idle_server_kib "$(rss_kib "$SERVER_PID")"
    record "$c" anon_idle_client_kib "$(rss_kib "$CLIENT_PID" anon)"
    record "$c" anon_idle_server_kib "$(rss_kib "$SERVER_PID" anon)"
    # Memory per idle connection: hold IDLE_CONNS keep-alive connections (one request each).
    local cb sb hold
    cb=$(rss_kib "$CLIENT_PID") sb=$(rss_kib "$SERVER_PID")
    hold=$(awk "BEGIN {print $IDLE_CONNS / 500 + 5}")
    # Emptied here: the background job's own redirection truncates it only once it runs.
    : >"$W/idle.out"
    timeout "$bound" "$LOAD" idle --target "$TARGET" --connections "$IDLE_CONNS" --hold "$hold" >"$W/idle.out" 2>&1 &
    local idle_pid=$! i
    for ((i = 0; i < 600; i++)); do
      grep -q '^held=' "$W/idle.out" 2>/dev/null && break
      kill -0 "$idle_pid" 2>/dev/null || break
      sleep 0.1
    done
    if ! grep -q '^held=' "$W/idle.out"; then
      local st=0
      wait "$idle_pid" || st=$?
      die "$c: holding $IDLE_CONNS idle connections failed (exit $st): $(cat "$W/idle.out")"
    fi
    sleep 0.5
    record "$c" conn_client_b $((($(rss_kib "$CLIENT_PID") - cb) * 1024 / IDLE_CONNS))
    record "$c" conn_server_b $((($(rss_kib "$SERVER_PID") - sb) * 1024 / IDLE_CONNS))
    kill -TERM "$idle_pid" 2>/dev/null || true
    wait "$idle_pid" 2>/dev/null || true
    # A fresh pair for the load: memory kept by the allocators after thousands of connections
    # would otherwise count as memory under load.
    for p in $(proxies); do stop "$p"; done
    "up_$c"
    wait_http "http://$TARGET/"
    timeout "$bound" "$LOAD" rate --target "$TARGET" --rate 500 --duration 0.5 --warmup 0 --connections 8 >/dev/null
  fi

  for rate in 1000 5000; do
    local k=lat1k
    ((rate == 5000)) && k=lat5k
    before=$(pair_cpu_ms)
    t0=$(date +%s%N)
    out=$(timeout "$bound" "$LOAD" rate --target "$TARGET" --rate "$rate" --duration "$RATE_S" --warmup "$WARM" --connections 32)
    t1=$(date +%s%N)
    after=$(pair_cpu_ms)
    log "  $c $rate req/s: $out"
    for s in p50 p90 p99 p999; do record "$c" "${k}_${s}_us" "$(field "${s}_us" "$out")"; done
    record "$c" errors "$(field errors "$out")"
    sent=$(field sent "$out")
    if ((rate == 5000 && CLIENT_PID && sent > 0)); then
      # CPU ms per 1000 requests = % of a core per 1000 req/s, times 10.
      record "$c" cpu_pct_per_1k "$(awk "BEGIN {print ($after - $before) / ($sent / 1000) / 10}")"
      log "  $c pair CPU: $((after - before)) ms in $(((t1 - t0) / 1000000)) ms"
    fi
  done

  # Maximum request rate (wrk, keep-alive); memory under load sampled halfway through.
  timeout "$bound" wrk -t1 -c32 -d"${WRK_S}s" "http://$TARGET/" >"$W/wrk.out" 2>&1 &
  local wrk_pid=$!
  if ((CLIENT_PID)); then
    sleep "$(awk "BEGIN {print $WRK_S / 2}")"
    record "$c" rss_load_client_kib "$(rss_kib "$CLIENT_PID")"
    record "$c" rss_load_server_kib "$(rss_kib "$SERVER_PID")"
  fi
  wait "$wrk_pid" || die "$c: wrk failed: $(cat "$W/wrk.out")"
  record "$c" max_rps "$(awk '/^Requests\/sec:/ {print $2}' "$W/wrk.out")"
  local werr
  werr=$(awk '/Non-2xx|Socket errors/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i} END {print s + 0}' "$W/wrk.out")
  record "$c" errors "$werr"
  log "  $c wrk: $(awk '/^Requests\/sec:/ {print $2}' "$W/wrk.out") req/s, errors $werr"

  out=$(timeout "$bound" "$LOAD" conn --target "$TARGET" --duration "$CONN_S" --concurrency 4)
  log "  $c new connections: $out"
  record "$c" conn_per_s "$(field conns_per_s "$out")"
  record "$c" errors "$(field errors "$out")"

  out=$(timeout "$bound" "$LOAD" bulk --target "$TARGET" --path /bulk --duration "$BULK_S")
  log "  $c bulk: $out"
  record "$c" bulk_mb_s "$(field mb_per_s "$out")"

  if ((PERF && CLIENT_PID && run == RUNS)) && command -v perf >/dev/null; then
    profile "$c"
  fi
  for p in $(proxies); do stop "$p"; done
}

# A CPU profile of a pair (--perf) at 5000 req/s, under new connections, and during the bulk
# download: where the time goes by object (kernel, proxy, libraries), then by symbol.
profile() { # CONTENDER
  local c=$1 pids what perf_pid data
  pids=$(for p in $(proxies); do descendants "$p"; done | paste -sd, -)
  for what in rate conn bulk; do
    data=$W/perf-$c-$what
    timeout 60 perf record -F 999 -p "$pids" -o "$data.data" -- sleep "$RATE_S" >/dev/null 2>&1 &
    perf_pid=$!
    case $what in
      rate) timeout 60 "$LOAD" rate --target "$TARGET" --rate 5000 --duration "$RATE_S" --warmup 0 --connections 32 ;;
      conn) timeout 60 "$LOAD" conn --target "$TARGET" --duration "$RATE_S" --concurrency 4 ;;
      bulk) timeout 60 "$LOAD" bulk --target "$TARGET" --path /bulk --duration "$RATE_S" ;;
    esac >/dev/null
    wait "$perf_pid" || true
    {
      perf report -i "$data.data" --no-children --sort dso --stdio 2>/dev/null
      perf report -i "$data.data" --no-children --sort dso,sym --stdio --percent-limit 0.7 2>/dev/null
    } | grep -v -e '^#' -e '^$' | cut -c1-160 >"$data.txt" || true
    rm -f "$data.data"
  done
  # System calls and context switches of the pair per request at 5000 req/s.
  local out sent
  timeout 60 perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$pids" \
    -o "$W/perf-$c-stat.csv" -- sleep "$RATE_S" >/dev/null 2>&1 &
  perf_pid=$!
  out=$(timeout 60 "$LOAD" rate --target "$TARGET" --rate 5000 --duration "$RATE_S" --warmup 0 --connections 32)
  wait "$perf_pid" || true
  sent=$(field sent "$out")
  if ((sent > 0)) && [[ -s $W/perf-$c-stat.csv ]]; then
    record "$c" syscalls_per_req "$(awk -F, -v n="$sent" '$3 ~ /raw_syscalls/ {print $1 / n}' "$W/perf-$c-stat.csv")"
    record "$c" cswitch_per_req "$(awk -F, -v n="$sent" '$3 ~ /context-switches/ {print $1 / n}' "$W/perf-$c-stat.csv")"
  fi
  log "  perf: summaries in $W/perf-$c-{rate,conn,bulk}.txt"
}

# --- run ---------------------------------------------------------------------------------------
log "mode $MODE: $RUNS run(s) of: $ONLY (work directory $W)"
log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
pki
start_app
for ((run = 1; run <= RUNS; run++)); do
  for c in $ONLY; do
    log "run $run/$RUNS: $c"
    measure "$c"
  done
done
log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "## Proxy benchmark ($MODE mode)"
echo
echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)."
echo "$(haproxy -v | head -1 | cut -d' ' -f1-3), nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $("$MESHWARD" --version 2>/dev/null || echo meshward), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(openssl version | cut -d' ' -f1-2)."
echo
"$LOAD" report "$RESULTS"
