#!/usr/bin/env bash
# Pass-through benchmark of memproxy on loopback (see BENCHMARKS.md).
#
#   bash Benchmarks/proxy/run.sh
#
# Measures, in one run: requests/s and p50/p99 latency of a static nginx upstream served directly, through
# nginx proxy_pass (upstream keepalive) and through memproxy, at concurrency 1, 16 and 64 (wrk, POST of a
# ~300-byte chat request, ~650-byte chat.completion answer); memproxy once more at log level info (c=64); memproxy
# with memory on (two workloads, each followed by the writer's drain; the first also split into X-Memory-Mode read
# and write cells at c=64); memory on per route (chat completions, Responses, Anthropic Messages: the same workload
# on each route, a fresh store each, memory on and off at c=64, each route's cost relative to chat's); then 500
# concurrent slow SSE streams through memproxy (threads and RSS sampled from /proc).
#
# Environment knobs (all optional):
#   MEMPROXY_BIN=path     use this binary instead of building (release, scratch path .build-bench)
#   DURATION=10s          wrk duration per measurement (default 10s)
#   NGINX_WORKERS=1       nginx worker_processes (default 1; see BENCHMARKS.md for why)
#   STREAMS=500 STREAM_EVENTS=40 STREAM_DELAY_MS=250   the slow-stream test
#   PROFILE=1             also record `perf record --call-graph dwarf` of memproxy during one more c=64 run
#                         (PROFILE_DURATION, default 10s); reports in $OUT/run/perf-*.txt
#   OUT=dir               where logs/configs/results go (default bench-out/proxy, git-ignored)
#   ROUTES_ONLY=1         run only the per-route cells (memory on/off per route) and print only their tables
#   ROUTE_ROUNDS=1        repeat the per-route cells this many times (the routes in turn, each round starting with
#                         the next route; the relative figures are the median over rounds)
#   ROUTE_CONCURRENCY=64  the per-route cells' concurrency
#
# Only loopback (127.0.0.1) is ever targeted. Every process started here is stopped on exit.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO/Benchmarks/proxy"
OUT="${OUT:-$REPO/bench-out/proxy}"
DURATION="${DURATION:-10s}"
NGINX_WORKERS="${NGINX_WORKERS:-1}"
STREAMS="${STREAMS:-500}"
STREAM_EVENTS="${STREAM_EVENTS:-40}"
STREAM_DELAY_MS="${STREAM_DELAY_MS:-250}"
PROFILE="${PROFILE:-0}"
PROFILE_DURATION="${PROFILE_DURATION:-10s}"
ROUTES_ONLY="${ROUTES_ONLY:-0}"
ROUTE_ROUNDS="${ROUTE_ROUNDS:-1}"
ROUTE_CONCURRENCY="${ROUTE_CONCURRENCY:-64}"
CONCURRENCIES=(1 16 64)
HOST=127.0.0.1

RUN="$OUT/run"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The previous run's directory is replaced, but only if this script made it (marker file).
if [[ -e "$RUN" ]]; then
    [[ -f "$RUN/.memproxy-proxy-bench" ]] || die "$RUN exists and was not made by this script; choose another OUT"
    rm -rf "$RUN"
fi
mkdir -p "$RUN"
touch "$RUN/.memproxy-proxy-bench"

# ---------------------------------------------------------------- cleanup of everything we start
PIDS=()
cleanup() {
    local status=$?
    for pid in "${PIDS[@]:-}"; do
        [[ -n "$pid" ]] || continue
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [[ -n "$pid" ]] || continue
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools
need_apt=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_apt+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
if ((${#need_apt[@]})); then
    log "installing ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
PYTHON="$(command -v pyenv >/dev/null 2>&1 && pyenv which python3 2>/dev/null || command -v python3)"
[[ -x "$PYTHON" ]] || die "python3 not found"

# The slow-stream test needs ~2 fds per stream in memproxy (client + upstream) and 1 in the fake upstream.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# ---------------------------------------------------------------- build
if [[ -z "${MEMPROXY_BIN:-}" ]]; then
    log "building memproxy (release, --scratch-path .build-bench)"
    (cd "$REPO" && swift build -c release --product memproxy --scratch-path .build-bench) >"$RUN/build.log" 2>&1 \
        || { tail -30 "$RUN/build.log" >&2; die "build failed (log: $RUN/build.log)"; }
    MEMPROXY_BIN="$REPO/.build-bench/release/memproxy"
fi
[[ -x "$MEMPROXY_BIN" ]] || die "no memproxy binary at $MEMPROXY_BIN"

# ---------------------------------------------------------------- ports
# Free ports below the kernel's ephemeral range, so that no client socket on the machine (ours included: wrk
# and curl take their source ports from that range) can occupy one between this check and the server's bind.
read -r P_STATIC P_NGINXPROXY P_MEMPROXY P_MEMPROXY_INFO P_FAKE P_MEMPROXY_SSE < <(
    "$PYTHON" -c '
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
ports = []
while len(ports) < 6:
    port = random.randrange(20000, max(20001, low))
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    if port not in ports:
        ports.append(port)
print(*ports)'
)

# ---------------------------------------------------------------- nginx: static upstream + proxy_pass
# ~650-byte non-streaming chat.completion answer.
RESPONSE_BODY='{"id":"chatcmpl-bench0001","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0123456789","choices":[{"index":0,"message":{"role":"assistant","content":"Measure throughput and tail latency at several concurrency levels, compare against a well-known baseline such as nginx, keep every target in the same run so that the ratios mean something, and write down the exact command.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":42,"completion_tokens":51,"total_tokens":93,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}'
# The same answer as a Responses object and as an Anthropic message, for the per-route cells (memproxy stores the
# reply of each; a Responses reply counts only with "status":"completed").
RESPONSES_BODY='{"id":"resp_bench0001","object":"response","created_at":1700000000,"status":"completed","error":null,"incomplete_details":null,"instructions":null,"model":"gpt-4o-mini-2024-07-18","output":[{"type":"message","id":"msg_bench0001","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Measure throughput and tail latency at several concurrency levels, compare against a well-known baseline such as nginx, keep every target in the same run so that the ratios mean something, and write down the exact command.","annotations":[]}]}],"parallel_tool_calls":true,"previous_response_id":null,"usage":{"input_tokens":42,"input_tokens_details":{"cached_tokens":0},"output_tokens":51,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":93}}'
MESSAGES_BODY='{"id":"msg_bench0001","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Measure throughput and tail latency at several concurrency levels, compare against a well-known baseline such as nginx, keep every target in the same run so that the ratios mean something, and write down the exact command."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":42,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":51,"service_tier":"standard"}}'
mkdir -p "$RUN/nginx/tmp"
cat >"$RUN/nginx/nginx.conf" <<EOF
# Private nginx for the benchmark; started in the foreground by run.sh, never as the system service.
daemon off;
master_process on;
worker_processes $NGINX_WORKERS;
pid $RUN/nginx/nginx.pid;
error_log $RUN/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path $RUN/nginx/tmp/body;
    proxy_temp_path $RUN/nginx/tmp/proxy;
    fastcgi_temp_path $RUN/nginx/tmp/fastcgi;
    uwsgi_temp_path $RUN/nginx/tmp/uwsgi;
    scgi_temp_path $RUN/nginx/tmp/scgi;

    # The fast static upstream: a fixed chat.completion for any method (return works for POST).
    server {
        listen $HOST:$P_STATIC;
        location = /v1/chat/completions {
            default_type application/json;
            return 200 '$RESPONSE_BODY';
        }
        location = /v1/responses {
            default_type application/json;
            return 200 '$RESPONSES_BODY';
        }
        location = /v1/messages {
            default_type application/json;
            return 200 '$MESSAGES_BODY';
        }
        location / { return 404; }
    }

    # The baseline proxy: plain proxy_pass with upstream keep-alive, the fair comparison.
    upstream static_upstream {
        server $HOST:$P_STATIC;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen $HOST:$P_NGINXPROXY;
        location / {
            proxy_pass http://static_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
"$NGINX" -t -q -p "$RUN/nginx" -e "$RUN/nginx/error.log" -c "$RUN/nginx/nginx.conf" \
    || die "nginx config test failed"
"$NGINX" -p "$RUN/nginx" -e "$RUN/nginx/error.log" -c "$RUN/nginx/nginx.conf" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")

wait_http() { # url deadline_seconds pid
    local url=$1 deadline=$(($(date +%s) + $2)) pid=$3
    until curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "process $pid died before $url answered"
        (($(date +%s) < deadline)) || die "$url not ready after $2 s"
        sleep 0.1
    done
}

# memproxy runs from an empty directory so no ./proxy.conf is picked up; everything comes from flags + env.
mkdir -p "$RUN/cwd"
start_memproxy() { # port upstream level logfile [database]; sets STARTED_PID
    local port=$1 upstream=$2 level=$3 logfile=$4 database=${5:-$RUN/cwd/memproxy.db}
    (cd "$RUN/cwd" && MEMPROXY_LOG_LEVEL="$level" MEMPROXY_MEMORY_DATABASE="$database" exec "$MEMPROXY_BIN" serve \
        --listen "$HOST:$port" --upstream "$upstream") >"$logfile" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}
stop_pid() { # pid: SIGTERM, wait up to 10 s, then SIGKILL
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}
forget_pid() { # pid: no longer ours to clean up (it has exited)
    local pid=$1 kept=() p
    for p in "${PIDS[@]}"; do [[ "$p" == "$pid" ]] || kept+=("$p"); done
    PIDS=("${kept[@]}")
}

start_memproxy "$P_MEMPROXY" "http://$HOST:$P_STATIC" warning "$RUN/memproxy.log"
MEMPROXY_PID=$STARTED_PID
CUR_MEMPROXY_PID=$MEMPROXY_PID
wait_http "http://$HOST:$P_STATIC/v1/chat/completions" 10 "$NGINX_PID"
wait_http "http://$HOST:$P_NGINXPROXY/v1/chat/completions" 10 "$NGINX_PID"
wait_http "http://$HOST:$P_MEMPROXY/healthz" 20 "$MEMPROXY_PID"

# Every target must return the same 200 body before anything is measured.
REQUEST_BODY="$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$HERE/post.lua")"
for port in "$P_STATIC" "$P_NGINXPROXY" "$P_MEMPROXY"; do
    got="$(curl -fsS --max-time 5 -X POST -H 'Content-Type: application/json' --data "$REQUEST_BODY" \
        "http://$HOST:$port/v1/chat/completions")" || die "POST to port $port failed"
    [[ "$got" == "$RESPONSE_BODY" ]] || die "port $port returned an unexpected body: $got"
done
log "nginx static :$P_STATIC, nginx proxy_pass :$P_NGINXPROXY, memproxy :$P_MEMPROXY (pid $MEMPROXY_PID) ready;" \
    "request ${#REQUEST_BODY} B, response ${#RESPONSE_BODY} B"

# ---------------------------------------------------------------- wrk runs
# CPU accounting, so that a noisy machine can be told apart from a slow proxy: process CPU time (utime+stime,
# in clock ticks) of the nginx workers and of the current memproxy, and how busy the whole machine was.
CLK_TCK=$(getconf CLK_TCK)
proc_ticks() { # pid... -> summed utime+stime (fields 14, 15 of /proc/PID/stat; comm has no spaces here)
    local total=0 pid t
    for pid in "$@"; do
        t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo "$total"
}
machine_ticks() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat; } # total idle(+iowait)
run_wrk() { # name port concurrency duration [lua] -> $RUN/wrk-name-c.txt and $RUN/cpu-name-c.txt
    local name=$1 port=$2 c=$3 duration=$4 script=${5:-$HERE/post.lua} threads=1
    ((c >= 16)) && threads=2
    local workers n0 m0 t0 i0 n1 m1 t1 i1 w0 w1 stat
    workers=$(pgrep -P "$NGINX_PID" | tr '\n' ' ')
    # shellcheck disable=SC2086
    n0=$(proc_ticks $workers); m0=$(proc_ticks $CUR_MEMPROXY_PID); read -r t0 i0 < <(machine_ticks)
    # wrk's CPU: waited-for children's time accumulates in this shell's cutime+cstime (read without forking).
    read -ra stat </proc/$$/stat; w0=$((stat[15] + stat[16]))
    timeout 60 wrk -t"$threads" -c"$c" -d"$duration" --timeout 5s --latency -s "$script" \
        "http://$HOST:$port/v1/chat/completions" >"$RUN/wrk-$name-$c.txt" 2>&1 \
        || die "wrk failed for $name c=$c: $(tail -3 "$RUN/wrk-$name-$c.txt")"
    read -ra stat </proc/$$/stat; w1=$((stat[15] + stat[16]))
    # shellcheck disable=SC2086
    n1=$(proc_ticks $workers); m1=$(proc_ticks $CUR_MEMPROXY_PID); read -r t1 i1 < <(machine_ticks)
    echo "$((n1 - n0)) $((m1 - m0)) $((t1 - t0)) $((i1 - i0)) $CLK_TCK $((w1 - w0))" >"$RUN/cpu-$name-$c.txt"
}

# ---------------------------------------------------------------- memory on, per route (issue 11)
# The "memory" workload (post-memory.lua's sessions, messages and words) on each route memproxy serves memory on,
# each on a fresh store with the default placement (the system prompt): a warm-up (2 s, c=16) and its drain, then
# c=ROUTE_CONCURRENCY with memory on, the writer's drain, and the same cell with X-Memory-Mode: off. "CPU incl.
# drain" counts memproxy's CPU from the start of the memory-on cell to the end of its drain, per request of the
# cell: a route whose storing falls behind pays for it there. Run after the memory workloads (or alone, ROUTES_ONLY=1).
ROUTES=("chat.completions:chat" "responses:responses" "messages:messages")  # route:MEMORY_API of post-memory.lua
route_rows() { # database -> "memories injections" (0 0 before the schema exists)
    "$PYTHON" -c '
import sqlite3, sys
try:
    db = sqlite3.connect(sys.argv[1])
    print(*(db.execute("select count(*) from " + t).fetchone()[0] for t in ("memories", "injections")))
except sqlite3.Error:
    print(0, 0)' "$1"
}
route_drain() { # database -> seconds until the memory count is stable (two reads 0.5 s apart agree; at most 120 s)
    local db=$1 start prev=-1 n
    start=$(date +%s.%N)
    for _ in $(seq 1 240); do
        n=$(route_rows "$db" | cut -d' ' -f1)
        [[ "$n" == "$prev" ]] && break
        prev=$n; sleep 0.5
    done
    "$PYTHON" -c "import sys; print(max(0, float(sys.argv[2]) - float(sys.argv[1]) - 0.5))" "$start" "$(date +%s.%N)"
}
route_check() { # route: one request with a session through memproxy gets the static answer and memory headers
    local route=$1 path body headers expected got
    case "$route" in
        chat.completions) path=/v1/chat/completions; expected=$RESPONSE_BODY
            body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"route check"}]}' ;;
        responses) path=/v1/responses; expected=$RESPONSES_BODY
            body='{"model":"gpt-4o-mini","input":[{"role":"user","content":"route check"}]}' ;;
        messages) path=/v1/messages; expected=$MESSAGES_BODY
            body='{"model":"claude-sonnet-4-5","max_tokens":200,"messages":[{"role":"user","content":"route check"}]}' ;;
    esac
    headers="$RUN/route-check-$route.headers"
    got="$(curl -fsS --max-time 5 -D "$headers" -X POST -H 'Content-Type: application/json' -H 'X-Session-Id: route-check' \
        --data "$body" "http://$HOST:$P_MEMPROXY$path")" || die "POST $path through memproxy failed"
    [[ "$got" == "$expected" ]] || die "memproxy returned an unexpected body for $path: $got"
    grep -qi '^X-Memory-Injected:' "$headers" || die "no X-Memory-Injected header on $path: memory is not on for it"
}
route_cells() {
    local round i entry route lua db pid m0 m1
    for round in $(seq 1 "$ROUTE_ROUNDS"); do
        # Round r starts with the r-th route (chat first in round 1), so that drift over a run is not always
        # charged to the same route.
        for i in 0 1 2; do
            entry=${ROUTES[$(((round - 1 + i) % 3))]}
            route=${entry%%:*}; lua="$HERE/post-memory.lua"; export MEMORY_API=${entry#*:}
            db="$RUN/route-$route-r$round.db"
            rm -f "$db" "$db-wal" "$db-shm"
            start_memproxy "$P_MEMPROXY" "http://$HOST:$P_STATIC" warning "$RUN/memproxy-route-$route-r$round.log" "$db"
            pid=$STARTED_PID
            CUR_MEMPROXY_PID=$pid
            wait_http "http://$HOST:$P_MEMPROXY/healthz" 20 "$pid"
            route_check "$route"
            run_wrk "route-$route-r$round-warmup" "$P_MEMPROXY" 16 2s "$lua"
            route_drain "$db" >/dev/null
            log "wrk route $route memory on c=$ROUTE_CONCURRENCY $DURATION (round $round/$ROUTE_ROUNDS)"
            m0=$(proc_ticks "$pid")
            run_wrk "route-$route-r$round-on" "$P_MEMPROXY" "$ROUTE_CONCURRENCY" "$DURATION" "$lua"
            route_drain "$db" >"$RUN/route-$route-r$round-drain.txt"
            m1=$(proc_ticks "$pid")
            echo "$((m1 - m0)) $(route_rows "$db")" >"$RUN/route-$route-r$round-totals.txt"
            log "wrk route $route memory off c=$ROUTE_CONCURRENCY $DURATION (round $round/$ROUTE_ROUNDS)"
            MEMORY_MODE=off run_wrk "route-$route-r$round-off" "$P_MEMPROXY" "$ROUTE_CONCURRENCY" "$DURATION" "$lua"
            stop_pid "$pid"
        done
    done
    unset MEMORY_API
}
route_report() {
    "$PYTHON" - "$RUN" "$DURATION" "$ROUTE_CONCURRENCY" "$ROUTE_ROUNDS" <<'PYEOF'
import os, re, statistics, sys
run, duration, c, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
routes = ("chat.completions", "responses", "messages")

def ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]

def parse(name, c=c):  # as the main report's parse()
    text = open(os.path.join(run, f"wrk-{name}-{c}.txt")).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m: errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m: errors += sum(int(x) for x in m.groups())
    total = int(re.search(r"(\d+) requests in", text).group(1))
    nginx_t, mem_t, all_t, idle_t, hz, wrk_t = map(int, open(os.path.join(run, f"cpu-{name}-{c}.txt")).read().split())
    busy = 100.0 * max(0, all_t - idle_t - nginx_t - mem_t - wrk_t) / max(all_t, 1)
    return dict(rps=rps, p50=p50, p99=p99, errors=errors, total=total, hz=hz, cpu=mem_t / hz * 1e6 / max(total, 1),
                busy=busy)

print(f"## Memory on per route: the \"memory\" workload on each route, c={c}, wrk {duration} per cell, a fresh store per route")
print()
print("post-memory.lua's sessions and messages in each API's shape (MEMORY_API=chat|responses|messages),")
print("the block in the system prompt (default placement), the same static answer in each API's shape. \"CPU incl.")
print("drain\": memproxy CPU from the start of the memory-on cell to the end of the writer's drain after it, per request")
print("of the cell. \"memory's CPU\": that minus the same route's CPU per request with X-Memory-Mode: off. \"stored / sent\":")
print("memories over 2 x the exchanges wrk counted with memory on (warm-up included; slightly above 1 in short cells:")
print("the requests in flight when a cell ends are stored but not counted).")
print()
print("| round | route | req/s | p50 ms | p99 ms | errors | memproxy CPU µs/req | CPU incl. drain | drain s | stored / sent "
      "| off: req/s | off: CPU µs/req | memory's CPU µs/req | other load % |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
cells = {}
for r in range(1, rounds + 1):
    for route in routes:
        on, off = parse(f"route-{route}-r{r}-on"), parse(f"route-{route}-r{r}-off")
        warmup = parse(f"route-{route}-r{r}-warmup", 16)
        ticks, memories, injections = map(int, open(os.path.join(run, f"route-{route}-r{r}-totals.txt")).read().split())
        drain = float(open(os.path.join(run, f"route-{route}-r{r}-drain.txt")).read())
        with_drain = ticks / on["hz"] * 1e6 / max(on["total"], 1)
        cells[r, route] = dict(rps=on["rps"], cpu=on["cpu"], with_drain=with_drain, memory=with_drain - off["cpu"])
        print(f"| {r} | {route} | {on['rps']:,.0f} | {on['p50']:.3f} | {on['p99']:.3f} | {on['errors'] + off['errors']} | "
              f"{on['cpu']:.0f} | {with_drain:.0f} | {drain:.1f} | {memories / max(2 * (on['total'] + warmup['total']), 1):.3f} | "
              f"{off['rps']:,.0f} | {off['cpu']:.0f} | {with_drain - off['cpu']:.0f} | {max(on['busy'], off['busy']):.0f} |")
print()
label = f"median of {rounds} rounds" if rounds > 1 else "one round"
print(f"Each route relative to chat completions ({label}; issue 11: memory-on cost per request within 10% of each other):")
print()
print("| route | req/s / chat | CPU µs/req / chat | CPU incl. drain / chat | memory's CPU / chat |")
print("|---|---:|---:|---:|---:|")
worst = 0.0
for route in routes:
    ratio = lambda key: statistics.median(cells[r, route][key] / cells[r, "chat.completions"][key] for r in range(1, rounds + 1))
    worst = max(worst, abs(ratio("with_drain") - 1))
    print(f"| {route} | {ratio('rps'):.2f} | {ratio('cpu'):.2f} | {ratio('with_drain'):.2f} | {ratio('memory'):.2f} |")
print()
print(f"Largest deviation from chat in memory-on CPU per request (incl. drain): {worst:.0%} "
      f"({'within' if worst <= 0.10 else 'NOT within'} 10%).")
PYEOF
}
if [[ "$ROUTES_ONLY" == 1 ]]; then
    stop_pid "$MEMPROXY_PID"
    log "per-route cells only (ROUTES_ONLY=1); load before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
    route_cells
    route_report | tee "$OUT/results.md"
    log "load after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
    log "raw wrk output, logs and configs: $RUN; table: $OUT/results.md"
    exit 0
fi

TARGETS=("direct:$P_STATIC" "nginx-proxy:$P_NGINXPROXY" "memproxy:$P_MEMPROXY")
log "load before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
for target in "${TARGETS[@]}"; do
    run_wrk "${target%%:*}-warmup" "${target##*:}" 16 2s
done
for c in "${CONCURRENCIES[@]}"; do
    for target in "${TARGETS[@]}"; do
        log "wrk ${target%%:*} c=$c $DURATION"
        run_wrk "${target%%:*}" "${target##*:}" "$c" "$DURATION"
    done
done
RSS_AFTER_LOAD_KB=$(awk '/^VmRSS/ {print $2}' "/proc/$MEMPROXY_PID/status")
THREADS_AFTER_LOAD=$(awk '/^Threads/ {print $2}' "/proc/$MEMPROXY_PID/status")

# memproxy at log level info (one JSON access line per request, to a file), c=64.
stop_pid "$MEMPROXY_PID"
start_memproxy "$P_MEMPROXY_INFO" "http://$HOST:$P_STATIC" info "$RUN/memproxy-info.log"
MEMPROXY_INFO_PID=$STARTED_PID
CUR_MEMPROXY_PID=$MEMPROXY_INFO_PID
wait_http "http://$HOST:$P_MEMPROXY_INFO/healthz" 20 "$MEMPROXY_INFO_PID"
log "wrk memproxy-info c=64 $DURATION"
run_wrk memproxy-info-warmup "$P_MEMPROXY_INFO" 16 2s
run_wrk memproxy-info "$P_MEMPROXY_INFO" 64 "$DURATION"
ACCESS_LINES=$(grep -c '"msg":"request"' "$RUN/memproxy-info.log" || true)
stop_pid "$MEMPROXY_INFO_PID"

# memproxy with memory on (issue 3): 64 sessions, a unique user message per request, so every request recalls
# against a growing store, gets memories injected and is stored. Same port as the pass-through memproxy. Two
# workloads, each on a fresh database: "memory" (post-memory.lua, a 16-word vocabulary: every query term is in
# nearly every memory, the worst case for recall) and "memory-zipf" (post-memory-zipf.lua, conversational word
# frequencies). After the cells, the writer's backlog is drained and timed: req/s alone would hide a writer that
# falls behind.
db_count() { # database table
    python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from ' + sys.argv[2]).fetchone()[0])" "$1" "$2"
}
memory_cells() { # name lua
    local name=$1 lua=$2 db="$RUN/$1.db" pid start prev n
    rm -f "$db" "$db-wal" "$db-shm"
    start_memproxy "$P_MEMPROXY" "http://$HOST:$P_STATIC" warning "$RUN/memproxy-$name.log" "$db"
    pid=$STARTED_PID
    CUR_MEMPROXY_PID=$pid
    wait_http "http://$HOST:$P_MEMPROXY/healthz" 20 "$pid"
    run_wrk "memproxy-$name-warmup" "$P_MEMPROXY" 16 2s "$lua"
    for c in "${CONCURRENCIES[@]}"; do
        ((c >= 16)) || continue
        log "wrk memproxy-$name c=$c $DURATION"
        run_wrk "memproxy-$name" "$P_MEMPROXY" "$c" "$DURATION" "$lua"
    done
    # Drain: poll the row count until two reads 0.5 s apart agree (at most 120 s).
    start=$(date +%s.%N); prev=-1
    for _ in $(seq 1 240); do
        n=$(db_count "$db" memories)
        [[ "$n" == "$prev" ]] && break
        prev=$n; sleep 0.5
    done
    echo "$(python3 -c "import sys; print(max(0, float(sys.argv[2]) - float(sys.argv[1]) - 0.5))" "$start" "$(date +%s.%N)")" \
        >"$RUN/drain-$name.txt"
    echo "$(db_count "$db" memories) $(db_count "$db" injections)" >"$RUN/rows-$name.txt"
    if [[ "$name" == memory ]]; then
        # Where memory's cost lies, on the store the cells above filled: c=64 with X-Memory-Mode: read (recall and
        # injection; only the injection record is written) and write (every exchange stored; nothing recalled).
        for mode in read write; do
            log "wrk memproxy-$name-$mode c=64 $DURATION"
            MEMORY_MODE=$mode run_wrk "memproxy-$name-$mode" "$P_MEMPROXY" 64 "$DURATION" "$lua"
        done
    fi
    stop_pid "$pid"
}
memory_cells memory "$HERE/post-memory.lua"
memory_cells memory-zipf "$HERE/post-memory-zipf.lua"
route_cells

# Optional profile of the pass-through path at c=64.
if [[ "$PROFILE" == 1 ]]; then
    command -v perf >/dev/null 2>&1 || { apt-get install -y -qq linux-perf >/dev/null || die "no perf"; }
    start_memproxy "$P_MEMPROXY" "http://$HOST:$P_STATIC" warning "$RUN/memproxy-profile.log"
    PROFILE_PID=$STARTED_PID
    CUR_MEMPROXY_PID=$PROFILE_PID
    wait_http "http://$HOST:$P_MEMPROXY/healthz" 20 "$PROFILE_PID"
    run_wrk memproxy-profile-warmup "$P_MEMPROXY" 16 2s
    log "perf record of memproxy during wrk c=64 $PROFILE_DURATION"
    perf record -F 997 --call-graph dwarf,32768 -p "$PROFILE_PID" -o "$RUN/perf.data" >"$RUN/perf-record.log" 2>&1 &
    PERF_PID=$!
    PIDS+=("$PERF_PID")
    sleep 1
    run_wrk memproxy-profile "$P_MEMPROXY" 64 "$PROFILE_DURATION"
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" || true
    forget_pid "$PERF_PID"
    perf report -i "$RUN/perf.data" --no-children --sort comm,dso,symbol --stdio --percent-limit 0.7 -g none \
        >"$RUN/perf-flat.txt" 2>/dev/null || true
    perf report -i "$RUN/perf.data" --children --sort symbol --stdio --percent-limit 3 -g none \
        >"$RUN/perf-children.txt" 2>/dev/null || true
    stop_pid "$PROFILE_PID"
    log "profile: $RUN/perf-flat.txt, $RUN/perf-children.txt"
fi

# ---------------------------------------------------------------- 500 concurrent slow streams
log "slow streams: $STREAMS x $STREAM_EVENTS events, ${STREAM_DELAY_MS} ms apart, through memproxy"
(cd "$RUN/cwd" && exec "$MEMPROXY_BIN" fake-upstream --listen "$HOST:$P_FAKE") >"$RUN/fake-upstream.log" 2>&1 &
FAKE_PID=$!
PIDS+=("$FAKE_PID")
start_memproxy "$P_MEMPROXY_SSE" "http://$HOST:$P_FAKE" warning "$RUN/memproxy-sse.log"
SSE_PID=$STARTED_PID
wait_http "http://$HOST:$P_FAKE/v1/test/sse?events=1" 20 "$FAKE_PID"
wait_http "http://$HOST:$P_MEMPROXY_SSE/healthz" 20 "$SSE_PID"
curl -fsS --max-time 5 "http://$HOST:$P_MEMPROXY_SSE/v1/test/sse?events=2" | grep -q '\[DONE\]' \
    || die "SSE through memproxy does not work"
sleep 1
IDLE_THREADS=$(awk '/^Threads/ {print $2}' "/proc/$SSE_PID/status")
IDLE_RSS_KB=$(awk '/^VmRSS/ {print $2}' "/proc/$SSE_PID/status")

listen_overflows() { awk '/^TcpExt:/ { if (!h) { split($0, n); h = 1 } else { split($0, v); for (i in n) if (n[i] == "ListenOverflows") print v[i] } }' /proc/net/netstat; }
OVERFLOWS_BEFORE=$(listen_overflows)
"$PYTHON" "$HERE/streams.py" --port "$P_MEMPROXY_SSE" --streams "$STREAMS" --events "$STREAM_EVENTS" \
    --delay-ms "$STREAM_DELAY_MS" --timeout 90 >"$RUN/streams.json" 2>"$RUN/streams.err" &
CLIENT_PID=$!
PIDS+=("$CLIENT_PID")
: >"$RUN/stream-samples.txt"
deadline=$(($(date +%s) + 120))
while kill -0 "$CLIENT_PID" 2>/dev/null && (($(date +%s) < deadline)); do
    sleep 1
    threads=$(awk '/^Threads/ {print $2}' "/proc/$SSE_PID/status")
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$SSE_PID/status")
    # Established connections: clients -> memproxy, and memproxy -> fake upstream.
    clients=$(ss -Htn state established "( sport = :$P_MEMPROXY_SSE )" | wc -l)
    upstreams=$(ss -Htn state established "( dport = :$P_FAKE )" | wc -l)
    echo "$threads $rss $clients $upstreams" >>"$RUN/stream-samples.txt"
done
STREAMS_STATUS=0
wait "$CLIENT_PID" || STREAMS_STATUS=$?
OVERFLOWS=$(($(listen_overflows) - OVERFLOWS_BEFORE))
AFTER_THREADS=$(awk '/^Threads/ {print $2}' "/proc/$SSE_PID/status")
AFTER_RSS_KB=$(awk '/^VmRSS/ {print $2}' "/proc/$SSE_PID/status")

# ---------------------------------------------------------------- report
CONC_PY="$(IFS=,; echo "${CONCURRENCIES[*]}")"
"$PYTHON" - "$RUN" "$STREAMS_STATUS" <<EOF | tee "$OUT/results.md"
import json, os, re, sys
run = sys.argv[1]

def ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

def parse(name, c):
    text = open(os.path.join(run, f"wrk-{name}-{c}.txt")).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m: errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m: errors += sum(int(x) for x in m.groups())
    total = int(re.search(r"(\d+) requests in", text).group(1))
    nginx_t, mem_t, all_t, idle_t, hz, wrk_t = map(int, open(os.path.join(run, f"cpu-{name}-{c}.txt")).read().split())
    us = lambda ticks: ticks / hz * 1e6 / max(total, 1)
    # Share of the machine's CPU used by processes outside the benchmark (other people's builds): noise.
    busy = 100.0 * max(0, all_t - idle_t - nginx_t - mem_t - wrk_t) / max(all_t, 1)
    return rps, p50, p99, errors, us(nginx_t), us(mem_t), busy, us(wrk_t)

print("## Pass-through: static nginx upstream, POST /v1/chat/completions, wrk $DURATION per cell")
print()
print("| target | concurrency | req/s | p50 ms | p99 ms | errors | CPU µs/req: wrk | nginx | memproxy | other load % |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
rows = {}
for c in ($CONC_PY):
    for name in ("direct", "nginx-proxy", "memproxy"):
        rows[name, c] = parse(name, c)
        rps, p50, p99, err, ncpu, mcpu, busy, wcpu = rows[name, c]
        mem = f"{mcpu:.0f}" if name == "memproxy" else "-"
        print(f"| {name} | {c} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {err} | {wcpu:.0f} | {ncpu:.0f} | {mem} | {busy:.0f} |")
print()
print("Ratios (req/s), and the CPU the proxy layer itself costs per request: memproxy's process, vs nginx's")
print("workers in the proxy_pass run minus its workers in the direct run (they serve the static upstream too).")
print()
print("| concurrency | memproxy / nginx-proxy | memproxy / direct | nginx-proxy / direct | proxy CPU µs/req: nginx proxy_pass | memproxy |")
print("|---:|---:|---:|---:|---:|---:|")
for c in ($CONC_PY):
    m, n, d = rows["memproxy", c], rows["nginx-proxy", c], rows["direct", c]
    print(f"| {c} | {m[0] / n[0]:.2f} | {m[0] / d[0]:.2f} | {n[0] / d[0]:.2f} | {n[4] - d[4]:.0f} | {m[5]:.0f} |")
print()
print("Memory on: every request has a session (64 sessions) and a unique user message; recall + injection +")
print("storing every exchange, against the same static upstream (memproxy pass-through rows above, same run).")
print("\"memory\": post-memory.lua (16-word vocabulary, every query term in nearly every memory: recall's worst case);")
print("\"memory-zipf\": post-memory-zipf.lua (Zipf word frequencies over 30,000 words, like conversation).")
print("\"drain s\": time the writer needed after the last cell to store the backlog; \"stored / sent\": memories")
print("in the database over 2 × the exchanges sent (warm-up included).")
print()
print("| workload | concurrency | req/s | p50 ms | p99 ms | errors | memproxy CPU µs/req | memory-on / pass-through | memory-on / direct |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in ("memory", "memory-zipf"):
    for c in ($CONC_PY):
        if c < 16: continue
        m = parse(f"memproxy-{name}", c)
        print(f"| {name} | {c} | {m[0]:,.0f} | {m[1]:.3f} | {m[2]:.3f} | {m[3]} | {m[5]:.0f} | "
              f"{m[0] / rows['memproxy', c][0]:.2f} | {m[0] / rows['direct', c][0]:.2f} |")
print()
print("Cost split (\"memory\" workload, c=64, after its cells, same process and store; X-Memory-Mode):")
print()
print("| mode | req/s | memproxy CPU µs/req | / pass-through |")
print("|---|---:|---:|---:|")
for mode, label in (("", "on (recall + inject + store)"), ("-read", "read (recall + inject)"), ("-write", "write (store)")):
    m = parse(f"memproxy-memory{mode}", 64)
    print(f"| {label} | {m[0]:,.0f} | {m[5]:.0f} | {m[0] / rows['memproxy', 64][0]:.2f} |")
print(f"| off (pass-through, above) | {rows['memproxy', 64][0]:,.0f} | {rows['memproxy', 64][5]:.0f} | 1.00 |")
print()
for name in ("memory", "memory-zipf"):
    sent, seconds = 0, 0.0
    for cell in [f"memproxy-{name}-warmup-16"] + [f"memproxy-{name}-{c}" for c in ($CONC_PY) if c >= 16]:
        found = re.search(r"(\d+) requests in ([\d.]+)(m?s)", open(os.path.join(run, f"wrk-{cell}.txt")).read())
        sent += int(found.group(1))
        seconds += float(found.group(2)) / (1000 if found.group(3) == "ms" else 1)
    memories, injections = map(int, open(os.path.join(run, f"rows-{name}.txt")).read().split())
    drain = float(open(os.path.join(run, f"drain-{name}.txt")).read())
    # The writer may store part of a cell's exchanges after it: counting that time too gives the rate the proxy
    # sustains with every exchange stored.
    sustained = sent / (seconds + drain)
    print(f"- {name}: {sent:,} exchanges sent, {memories:,} memories stored (stored / sent = {memories / max(2 * sent, 1):.3f}), "
          f"{injections:,} injection records; drain after the last cell: {drain:.1f} s; sustained (sent / (cells + drain)): "
          f"{sustained:,.0f} exchanges/s = {sustained / rows['memproxy', 64][0]:.2f}x pass-through at c=64")
info = parse("memproxy-info", 64)
print()
print(f"memproxy at log level info (one JSON access line per request, to a file), c=64: {info[0]:,.0f} req/s, "
      f"p50 {info[1]:.3f} ms, p99 {info[2]:.3f} ms, errors {info[3]}, memproxy CPU {info[5]:.0f} µs/req "
      f"= {info[0] / rows['memproxy', 64][0]:.2f}x the warning-level figure; access lines written: ${ACCESS_LINES}")
print(f"memproxy (warning) after the wrk runs: ${THREADS_AFTER_LOAD} threads, RSS {${RSS_AFTER_LOAD_KB} / 1024:.1f} MiB")
if os.path.exists(os.path.join(run, "wrk-memproxy-profile-64.txt")):
    p = parse("memproxy-profile", 64)
    print(f"memproxy under perf (c=64): {p[0]:,.0f} req/s, memproxy CPU {p[5]:.0f} µs/req")

print()
print("## $STREAMS concurrent slow SSE streams through memproxy ($STREAM_EVENTS events, $STREAM_DELAY_MS ms apart)")
print()
result = json.load(open(os.path.join(run, "streams.json"))) if os.path.getsize(os.path.join(run, "streams.json")) else {}
samples = [list(map(int, line.split())) for line in open(os.path.join(run, "stream-samples.txt")) if line.strip()]
print(f"- streams complete and correct (all events + [DONE]): {result.get('ok')}/{result.get('streams')}"
      f" (client exit status {sys.argv[2]}); errors: {result.get('errors') or 'none'}")
print(f"- wall time for all streams: {result.get('duration_s')} s (one stream alone: {result.get('ideal_stream_s')} s"
      f" of delays); per stream p50 {result.get('stream_p50_s')} s, max {result.get('stream_max_s')} s;"
      f" first byte p50 {result.get('first_byte_p50_s')} s, max {result.get('first_byte_max_s')} s")
print(f"- streams whose first byte took > 0.9 s (a SYN retransmission): {result.get('first_byte_over_900ms')};"
      f" TcpExt ListenOverflows during the test (machine-wide): ${OVERFLOWS}")
print("- memproxy threads / RSS:")
print()
print("| moment | threads | RSS MiB | client conns | upstream conns |")
print("|---|---:|---:|---:|---:|")
print(f"| idle, before the streams | ${IDLE_THREADS} | {${IDLE_RSS_KB} / 1024:.1f} | 0 | 0 |")
if samples:
    peak = max(samples, key=lambda s: s[2])
    print(f"| under load: max threads over {len(samples)} samples (1/s) | {max(s[0] for s in samples)} | "
          f"{max(s[1] for s in samples) / 1024:.1f} (max) | {max(s[2] for s in samples)} (max) | {max(s[3] for s in samples)} (max) |")
    print(f"| sample with most open client conns | {peak[0]} | {peak[1] / 1024:.1f} | {peak[2]} | {peak[3]} |")
print(f"| after the streams ended | ${AFTER_THREADS} | {${AFTER_RSS_KB} / 1024:.1f} | | |")
EOF

echo | tee -a "$OUT/results.md"
route_report | tee -a "$OUT/results.md"

log "load after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
log "raw wrk output, logs and configs: $RUN; table: $OUT/results.md"
((STREAMS_STATUS == 0)) || die "not every slow stream completed correctly (see $RUN/streams.json)"
