#!/usr/bin/env bash
# A/B of two memproxy binaries in pass-through, in one run, next to the same baselines as run.sh.
#
#   MEMPROXY_A=path/to/old MEMPROXY_B=path/to/new bash Benchmarks/proxy/ab.sh
#
# One static nginx upstream (the ~650-byte chat.completion of run.sh), nginx proxy_pass to it (upstream keep-alive),
# and the two memproxy binaries in front of it. Each round measures every target in turn (direct, nginx-proxy, A, B;
# the order of A and B alternates between rounds) with wrk at each concurrency, so that a drift of the machine's
# speed hits both binaries alike. Prints one line per cell (req/s, p50, p99, memproxy CPU µs and context switches per
# request), the median over rounds of each target, and the ratios B/A taken pair by pair (A and B of the same round)
# with their median, min and max: on a shared machine the paired ratio is the figure to trust. The p50/p99 are wrk's
# `--latency` percentiles. When `perf stat -e raw_syscalls:sys_enter` works (tracefs mounted), each memproxy cell also
# gets its syscalls per request; these counts, like the context switches, barely move with the machine's load.
#
# Environment knobs (all optional):
#   ROUNDS=3              rounds
#   DURATION=5s           wrk duration per cell (after one 1 s warm-up of each target per round)
#   CONCURRENCIES="1 64"  wrk connections per cell (-t1 below 16, -t2 from 16)
#   OUT=dir               logs, configs, raw wrk output (default bench-out/proxy-ab, git-ignored)
#
# Only 127.0.0.1 is used; every process started here is stopped on exit.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO/Benchmarks/proxy"
OUT="${OUT:-$REPO/bench-out/proxy-ab}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5s}"
read -ra CONCURRENCIES <<<"${CONCURRENCIES:-1 64}"
HOST=127.0.0.1
A="${MEMPROXY_A:?set MEMPROXY_A to the baseline memproxy binary}"
B="${MEMPROXY_B:?set MEMPROXY_B to the memproxy binary to compare}"
[[ -x "$A" && -x "$B" ]] || { echo "MEMPROXY_A and MEMPROXY_B must be executables" >&2; exit 1; }

log() { printf '[ab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ -e "$OUT" ]]; then
    [[ -f "$OUT/.memproxy-proxy-ab" ]] || die "$OUT exists and was not made by this script; choose another OUT"
    rm -rf "$OUT"
fi
mkdir -p "$OUT/nginx/tmp" "$OUT/cwd-a" "$OUT/cwd-b"
touch "$OUT/.memproxy-proxy-ab"

PIDS=()
cleanup() {
    local status=$? pid
    for pid in "${PIDS[@]:-}"; do [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]:-}"; do
        [[ -n "$pid" ]] || continue
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v wrk >/dev/null 2>&1 || die "wrk not found (apt-get install wrk)"
# Syscalls per request of each memproxy cell, counted by `perf stat -e raw_syscalls:sys_enter` when that works here
# (it needs tracefs); otherwise that column stays empty.
PERF_SYSCALLS=""
if command -v perf >/dev/null 2>&1 && perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then
    PERF_SYSCALLS=1
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[[ -x "$NGINX" ]] || die "nginx not found (apt-get install nginx-light)"
PYTHON="$(command -v pyenv >/dev/null 2>&1 && pyenv which python3 2>/dev/null || command -v python3)"

read -r P_STATIC P_NGINXPROXY P_A P_B < <(
    "$PYTHON" -c '
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
ports = []
while len(ports) < 4:
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

# The same answer as run.sh's static upstream.
RESPONSE_BODY="$(sed -n "s/^RESPONSE_BODY='\(.*\)'$/\1/p" "$HERE/run.sh")"
[[ -n "$RESPONSE_BODY" ]] || die "could not read RESPONSE_BODY from run.sh"
cat >"$OUT/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path $OUT/nginx/tmp/body;
    proxy_temp_path $OUT/nginx/tmp/proxy;
    fastcgi_temp_path $OUT/nginx/tmp/fastcgi;
    uwsgi_temp_path $OUT/nginx/tmp/uwsgi;
    scgi_temp_path $OUT/nginx/tmp/scgi;
    server {
        listen $HOST:$P_STATIC;
        location = /v1/chat/completions {
            default_type application/json;
            return 200 '$RESPONSE_BODY';
        }
        location / { return 404; }
    }
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
"$NGINX" -p "$OUT/nginx" -e "$OUT/nginx/error.log" -c "$OUT/nginx/nginx.conf" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")

start_memproxy() { # binary port cwd -> STARTED_PID
    (cd "$3" && MEMPROXY_LOG_LEVEL=warning MEMPROXY_MEMORY_DATABASE="$3/memproxy.db" exec "$1" serve \
        --listen "$HOST:$2" --upstream "http://$HOST:$P_STATIC") >"$3/memproxy.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}
start_memproxy "$A" "$P_A" "$OUT/cwd-a"
PID_A=$STARTED_PID
start_memproxy "$B" "$P_B" "$OUT/cwd-b"
PID_B=$STARTED_PID

wait_http() { # url pid
    local deadline=$(($(date +%s) + 20))
    until curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || die "process $2 died before $1 answered"
        (($(date +%s) < deadline)) || die "$1 not ready after 20 s"
        sleep 0.1
    done
}
wait_http "http://$HOST:$P_STATIC/v1/chat/completions" "$NGINX_PID"
wait_http "http://$HOST:$P_NGINXPROXY/v1/chat/completions" "$NGINX_PID"
wait_http "http://$HOST:$P_A/healthz" "$PID_A"
wait_http "http://$HOST:$P_B/healthz" "$PID_B"
REQUEST_BODY="$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$HERE/post.lua")"
for port in "$P_STATIC" "$P_NGINXPROXY" "$P_A" "$P_B"; do
    got="$(curl -fsS --max-time 5 -X POST -H 'Content-Type: application/json' --data "$REQUEST_BODY" \
        "http://$HOST:$port/v1/chat/completions")" || die "POST to port $port failed"
    [[ "$got" == "$RESPONSE_BODY" ]] || die "port $port returned an unexpected body: $got"
done
log "direct :$P_STATIC, nginx-proxy :$P_NGINXPROXY, A :$P_A ($A), B :$P_B ($B)"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
switches() { # voluntary + involuntary context switches of all threads of a process
    cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'
}
cell() { # round name port pid c
    local round=$1 name=$2 port=$3 pid=$4 c=$5 threads=1 t0 t1 s0 s1
    ((c >= 16)) && threads=2
    wrk -t"$threads" -c"$c" -d1s -s "$HERE/post.lua" "http://$HOST:$port/v1/chat/completions" >/dev/null 2>&1
    t0=$([[ -n "$pid" ]] && ticks "$pid" || echo 0)
    s0=$([[ -n "$pid" ]] && switches "$pid" || echo 0)
    local perf_pid=""
    if [[ -n "$pid" && -n "$PERF_SYSCALLS" ]]; then
        perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$OUT/perf-$round-$name-$c.txt" 2>/dev/null &
        perf_pid=$!
    fi
    timeout 60 wrk -t"$threads" -c"$c" -d"$DURATION" --timeout 5s --latency -s "$HERE/post.lua" \
        "http://$HOST:$port/v1/chat/completions" >"$OUT/wrk-$round-$name-$c.txt" 2>&1 || die "wrk failed: $name c=$c"
    t1=$([[ -n "$pid" ]] && ticks "$pid" || echo 0)
    s1=$([[ -n "$pid" ]] && switches "$pid" || echo 0)
    if [[ -n "$perf_pid" ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
    fi
    echo "$round $name $c $((t1 - t0)) $((s1 - s0))" >>"$OUT/cells.txt"
}
for round in $(seq 1 "$ROUNDS"); do
    for c in "${CONCURRENCIES[@]}"; do
        cell "$round" direct "$P_STATIC" "" "$c"
        cell "$round" nginx-proxy "$P_NGINXPROXY" "" "$c"
        if ((round % 2)); then
            cell "$round" A "$P_A" "$PID_A" "$c"
            cell "$round" B "$P_B" "$PID_B" "$c"
        else
            cell "$round" B "$P_B" "$PID_B" "$c"
            cell "$round" A "$P_A" "$PID_A" "$c"
        fi
    done
    log "round $round done"
done

"$PYTHON" - "$OUT" "$(getconf CLK_TCK)" <<'EOF'
import os, re, statistics, sys
out, clk = sys.argv[1], int(sys.argv[2])
def ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rows = {}
for line in open(os.path.join(out, "cells.txt")):
    round_, name, c, ticks, switches = line.split()
    text = open(os.path.join(out, f"wrk-{round_}-{name}-{c}.txt")).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    p50 = ms(*re.search(r"50%\s+([\d.]+)(us|ms|s)", text).groups())
    p99 = ms(*re.search(r"99%\s+([\d.]+)(us|ms|s)", text).groups())
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors += int(non2xx.group(1)) if non2xx else 0
    mine = name in ("A", "B")
    cpu = int(ticks) / clk * 1e6 / max(requests, 1) if mine else None
    csw = int(switches) / max(requests, 1) if mine else None
    sysc = None
    perf_file = os.path.join(out, f"perf-{round_}-{name}-{c}.txt")
    if mine and os.path.exists(perf_file):
        found = re.search(r"^(\d+),,raw_syscalls:sys_enter", open(perf_file).read(), re.M)
        sysc = int(found.group(1)) / max(requests, 1) if found else None
    rows.setdefault((name, int(c)), []).append((rps, p50, p99, cpu, errors, csw, int(round_), sysc))
    cpu_text = f"{cpu:.0f} µs/req, {csw:.2f} ctx switches/req" if mine else "-"
    if sysc is not None:
        cpu_text += f", {sysc:.2f} syscalls/req"
    print(f"round {round_} {name:11} c={c:>3}: {rps:9,.0f} req/s  p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
          f"memproxy CPU {cpu_text}  errors {errors}")
print()
print("| target | c | req/s | p50 ms | p99 ms | memproxy CPU µs/req | memproxy ctx switches/req | memproxy syscalls/req | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
med = {}
for (name, c), cells in sorted(rows.items(), key=lambda kv: (kv[0][1], ["direct", "nginx-proxy", "A", "B"].index(kv[0][0]))):
    m = [statistics.median(x[i] for x in cells) if all(x[i] is not None for x in cells) else None for i in range(8)]
    med[name, c] = m
    cpu = f"{m[3]:.0f}" if m[3] is not None else "-"
    csw = f"{m[5]:.2f}" if m[5] is not None else "-"
    sysc = f"{m[7]:.2f}" if m[7] is not None else "-"
    print(f"| {name} | {c} | {m[0]:,.0f} | {m[1]:.3f} | {m[2]:.3f} | {cpu} | {csw} | {sysc} | {sum(x[4] for x in cells)} |")
print()
print("B/A pair by pair (A and B of the same round): median [min–max] over rounds. Below 1 is better for p50, p99,")
print("CPU and switches; above 1 is better for req/s. Added p50 = the median p50 minus direct's median p50.")
print()
print("| c | B/A req/s | B/A p50 | B/A p99 | B/A CPU/req | B/A ctx switches/req | B/A syscalls/req | added p50 µs: nginx-proxy / A / B | A / nginx-proxy req/s | B / nginx-proxy req/s |")
print("|---:|---|---|---|---|---|---|---|---:|---:|")
def paired(c, i):
    a = {x[6]: x[i] for x in rows["A", c]}
    b = {x[6]: x[i] for x in rows["B", c]}
    ratios = sorted(b[r] / a[r] for r in a if r in b and a[r] and b[r] is not None)
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f} [{ratios[0]:.2f}–{ratios[-1]:.2f}]"
for c in sorted({c for _, c in med}):
    a, b, n, d = med["A", c], med["B", c], med["nginx-proxy", c], med["direct", c]
    added = " / ".join(f"{(x[1] - d[1]) * 1000:.0f}" for x in (n, a, b))
    cells = " | ".join(paired(c, i) for i in (0, 1, 2, 3, 5, 7))
    print(f"| {c} | {cells} | {added} | {a[0] / n[0]:.2f} | {b[0] / n[0]:.2f} |")
EOF
