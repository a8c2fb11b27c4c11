#!/usr/bin/env python3
"""Embedder throughput and backlog under a steady write load (issue 12).

Starts three processes, all on 127.0.0.1 and all stopped at the end (also on Ctrl-C or an error):
  - Benchmarks/embeddings/server.py (all-MiniLM-L6-v2 int8 via onnxruntime; needs the venv of README.md),
  - `memproxy fake-upstream` (an OpenAI-like echo upstream),
  - `memproxy` with a fresh database in a temporary directory under /tmp and `[embeddings]` pointing at the server.
Then sends `--rate` chat completions a second for `--minutes` over `--sessions` sessions (each request stores two
memories: the user text and the fake's `echo: …` reply, so the offered write rate is 2 × rate memories/s), samples
`GET /metrics` every `--sample-seconds` (one progress line each), stops the load, waits for the backlog to drain
(up to `--drain-timeout` s) and prints a markdown table.

Standard library only (Python 3.11). Nothing is written into the repository; `--json-out FILE` saves the samples.

    swift build -c release --product memproxy --scratch-path .build-release
    python3 Benchmarks/embeddings/backlog.py --minutes 1 --rate 20
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL = "all-MiniLM-L6-v2-int8"

# ---------------------------------------------------------------------------------------------------------------
# Conversational texts: templates with slots filled from word lists, 1–4 sentences, 10–40 words.

NAMES = ["Anna", "Ben", "Carla", "Dev", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Luca", "Maya",
         "Nils", "Olga", "Priya", "Quentin", "Rosa", "Sami", "Tomas", "Uma", "Viktor", "Wen", "Yusuf", "Zoe"]
RELATIONS = ["sister", "brother", "mother", "father", "neighbour", "colleague", "manager", "best friend", "cousin",
             "grandmother", "roommate", "dentist", "landlord", "son", "daughter", "partner", "coach"]
PETS = ["cat", "dog", "parrot", "rabbit", "hamster", "tortoise", "goldfish", "puppy", "kitten", "gecko"]
PET_NAMES = ["Miso", "Biscuit", "Pepper", "Luna", "Mango", "Olive", "Ziggy", "Noodle", "Pixel", "Toffee"]
PLACES = ["Lisbon", "Kyoto", "the Alps", "Berlin", "the coast", "Montreal", "my hometown", "Oaxaca", "Edinburgh",
          "the lake house", "Seoul", "a small village near Porto", "Cape Town", "the countryside", "Vancouver"]
FOODS = ["ramen", "lasagna", "a lentil curry", "sourdough bread", "tacos", "pho", "banana pancakes", "risotto",
         "dumplings", "a Greek salad", "shakshuka", "chili", "apple pie", "sushi", "falafel wraps"]
HOBBIES = ["rock climbing", "painting watercolours", "learning the guitar", "running", "baking", "chess",
           "gardening", "photography", "knitting", "birdwatching", "pottery", "swimming", "writing short stories",
           "salsa dancing", "woodworking", "playing the piano", "yoga", "hiking"]
THINGS = ["laptop", "bike", "car", "phone", "kitchen sink", "washing machine", "camera", "headphones", "printer",
          "old sofa", "router", "coffee machine", "tent", "winter jacket"]
TIMES = ["yesterday", "last weekend", "this morning", "two weeks ago", "on Friday", "last summer", "tonight",
         "next month", "over the holidays", "every Sunday", "since January", "after work", "in March"]
FEELINGS = ["excited", "a bit nervous", "exhausted", "really happy", "frustrated", "relieved", "curious",
            "overwhelmed", "proud", "bored", "grateful", "worried"]
WORK = ["a quarterly report", "the database migration", "a grant proposal", "the new onboarding flow",
        "a conference talk", "my thesis", "the budget spreadsheet", "a client presentation", "the bug tracker",
        "a job application", "the team offsite", "a pull request review"]
ADVERB = ["honestly", "really", "actually", "probably", "definitely", "somehow", "finally", "still"]

TEMPLATES = [
    "My {relation} {name} is visiting {time} and I want to cook {food} for dinner.",
    "I have been {hobby} {time} and I am {feeling} about how it is going.",
    "We are planning a trip to {place} {time}; do you know what the weather is like there?",
    "My {pet} {pet_name} {adverb} refuses to eat anything except {food}.",
    "Can you remind me that {name} asked me to review {work} before {time}?",
    "I {adverb} need to fix my {thing}, it broke {time} and the repair shop is closed.",
    "Since I moved to {place} I started {hobby}, and my {relation} thinks it is hilarious.",
    "I feel {feeling} about {work}; the deadline is {time} and I am not even halfway.",
    "What should I bring to {place}? I am going with my {relation} {name} {time}.",
    "{name} recommended a recipe for {food}, but I have never cooked it before.",
    "My {relation} gave me a {pet} for my birthday and we called it {pet_name}.",
    "I want to get better at {hobby}; how many hours a week should a beginner practice?",
    "The {thing} I bought {time} already makes a strange noise, should I return it?",
    "Please remember that I am allergic to nuts and that I do not eat meat.",
    "I told {name} I would help with {work}, but I {adverb} have no time {time}.",
    "Is it normal for a {pet} to sleep all day? {pet_name} has been very quiet {time}.",
    "My favourite place in the world is {place}, mostly because of the {food} there.",
    "I am {feeling} because {name} finally said yes to joining our {hobby} group.",
    "Could you help me write a short message to my {manager} about {work}?",
    "We had {food} at the new place downtown {time} and it was {adverb} the best I ever had.",
]
FILLERS = [
    "Also, I keep forgetting things lately, so it helps to write them down here.",
    "By the way, the weather has been awful all week.",
    "Any advice is welcome, I am a bit lost.",
    "It has been a long day.",
    "I am trying to keep things simple this year.",
    "Thanks again for the help with the last question.",
    "My {relation} says I worry too much about these things.",
    "I will probably ask you about this again {time}.",
]


def fill(template: str, rng: random.Random) -> str:
    values = {
        "name": rng.choice(NAMES), "relation": rng.choice(RELATIONS), "pet": rng.choice(PETS),
        "pet_name": rng.choice(PET_NAMES), "place": rng.choice(PLACES), "food": rng.choice(FOODS),
        "hobby": rng.choice(HOBBIES), "thing": rng.choice(THINGS), "time": rng.choice(TIMES),
        "feeling": rng.choice(FEELINGS), "work": rng.choice(WORK), "adverb": rng.choice(ADVERB),
        "manager": rng.choice(["manager", "team lead", "professor", "landlord"]),
    }
    text = template.format(**values)
    return text[0].upper() + text[1:]


def conversational_text(rng: random.Random) -> str:
    """10–40 words: one to three template sentences, sometimes a filler sentence."""
    target = rng.randint(10, 40)
    parts: list = []
    words = 0
    while words < target and len(parts) < 4:
        template = rng.choice(FILLERS) if parts and rng.random() < 0.3 else rng.choice(TEMPLATES)
        sentence = fill(template, rng)
        count = len(sentence.split())
        if parts and words + count > 40:
            break
        parts.append(sentence)
        words += count
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# Processes.

class Processes:
    """Every child process this script started; `stop()` ends them by pid (SIGTERM, then SIGKILL)."""

    def __init__(self):
        self.children: list = []

    def start(self, name, argv, log_path, env=None, cwd=None):
        log = open(log_path, "wb")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.children.append((name, process))
        return process

    def stop(self):
        for _, process in reversed(self.children):
            if process.poll() is None:
                try:
                    process.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for name, process in reversed(self.children):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                print(f"# {name} (pid {process.pid}) did not stop on SIGTERM: killing it", file=sys.stderr)
                process.kill()
                process.wait(timeout=5)
        self.children.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, process, what: str, log_path: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}; log:\n{tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s; log:\n{tail(log_path)}")


def tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, "rb") as handle:
            return "\n".join(handle.read().decode("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def proc_stats(pid: int):
    """(RSS in MB, CPU seconds) of a live process, from /proc."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            rss = next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) / 1024
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return rss, cpu
    except (OSError, StopIteration, IndexError, ValueError):
        return None, None


# ---------------------------------------------------------------------------------------------------------------
# Metrics.

METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def scrape(port: int) -> dict:
    """The /metrics values we use: {name or name{labels}: float}."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    values = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = METRIC_LINE.match(line)
        if match and (match.group(1).startswith("memory_embeddings") or match.group(1).startswith("memory_query")):
            try:
                values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
            except ValueError:
                pass
    return values


def query_outcomes(values: dict) -> dict:
    outcomes = {}
    for key, value in values.items():
        match = re.match(r'memory_query_embeddings_total\{.*outcome="([^"]+)".*\}', key)
        if match:
            outcomes[match.group(1)] = outcomes.get(match.group(1), 0) + int(value)
    return outcomes


# ---------------------------------------------------------------------------------------------------------------
# Load.

class Load:
    """Open-loop load: request i is due at start + i / rate; `threads` workers take the next due request."""

    def __init__(self, port, rate, sessions, threads, seed):
        self.port = port
        self.rate = rate
        self.sessions = [f"bench-{seed}-{i:03d}" for i in range(sessions)]
        self.threads = threads
        self.seed = seed
        self.lock = threading.Lock()
        self.next_index = 0
        self.stop_event = threading.Event()
        self.sent = 0
        self.ok = 0
        self.errors: dict = {}
        self.recall: dict = {}
        self.memory_errors: dict = {}
        self.latencies: list = []
        self.late_starts = 0  # requests that started > 1 s after they were due (the workers could not keep up)
        self.workers: list = []
        self.start_time = None

    def start(self):
        self.start_time = time.monotonic()
        for n in range(self.threads):
            worker = threading.Thread(target=self.work, args=(n,), daemon=True)
            worker.start()
            self.workers.append(worker)

    def stop(self):
        self.stop_event.set()
        for worker in self.workers:
            worker.join(timeout=30)

    def snapshot(self):
        with self.lock:
            return self.sent, self.ok, sum(self.errors.values())

    def work(self, n):
        rng = random.Random(self.seed * 1000 + n)
        connection = None
        while not self.stop_event.is_set():
            with self.lock:
                index = self.next_index
                self.next_index += 1
            due = self.start_time + index / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                if self.stop_event.wait(delay):
                    break
            elif delay < -1:
                with self.lock:
                    self.late_starts += 1
            session = self.sessions[rng.randrange(len(self.sessions))]
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": conversational_text(rng)}]})
            started = time.monotonic()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                connection.request("POST", "/v1/chat/completions", body=body,
                                   headers={"Content-Type": "application/json", "X-Session-Id": session})
                response = connection.getresponse()
                response.read()
                elapsed = time.monotonic() - started
                with self.lock:
                    self.sent += 1
                    self.latencies.append(elapsed)
                    if response.status == 200:
                        self.ok += 1
                    else:
                        key = f"HTTP {response.status}"
                        self.errors[key] = self.errors.get(key, 0) + 1
                    mode = response.getheader("X-Memory-Recall") or "(none)"
                    self.recall[mode] = self.recall.get(mode, 0) + 1
                    error = response.getheader("X-Memory-Error")
                    if error:
                        self.memory_errors[error] = self.memory_errors.get(error, 0) + 1
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                with self.lock:
                    self.sent += 1
                    key = type(error).__name__
                    self.errors[key] = self.errors.get(key, 0) + 1
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


# ---------------------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="duration of the write load (default 10)")
    parser.add_argument("--rate", type=float, default=20.0, help="chat requests per second (2 memories each)")
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--threads", type=int, default=8,
                        help="client threads (keep-alive connections; a request waits up to query_timeout_ms for "
                             "its query embedding, so 4 threads top out at ~26 req/s)")
    parser.add_argument("--batch-size", type=int, help="MEMPROXY_EMBEDDINGS_BATCH_SIZE (memproxy's default: 64)")
    parser.add_argument("--query-timeout-ms", type=int, help="MEMPROXY_EMBEDDINGS_QUERY_TIMEOUT_MS (default: 150)")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for the backlog to drain")
    parser.add_argument("--memproxy-bin", default=os.environ.get(
        "MEMPROXY_BIN", os.path.join(ROOT, ".build-release", "release", "memproxy")))
    parser.add_argument("--python", default="/tmp/memproxy-emb-venv/bin/python",
                        help="the venv's python for server.py (README.md)")
    parser.add_argument("--server-batch-size", type=int, help="server.py --batch-size (texts per forward pass)")
    parser.add_argument("--stall-seconds", type=float, default=60.0,
                        help="give up when no request completes and no vector is stored for this long")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json-out", help="also write the samples and the result as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database and logs)")
    args = parser.parse_args()
    if args.rate <= 0 or args.minutes <= 0 or args.sessions <= 0 or args.threads <= 0:
        parser.error("--rate, --minutes, --sessions and --threads must be positive")
    if not os.access(args.memproxy_bin, os.X_OK):
        parser.error(f"{args.memproxy_bin} is not executable: build it with "
                     "`swift build -c release --product memproxy --scratch-path .build-release` or set MEMPROXY_BIN")
    if not os.access(args.python, os.X_OK):
        parser.error(f"{args.python} not found: create the venv of Benchmarks/embeddings/README.md or pass --python")

    # SIGTERM ends the run like Ctrl-C: the finally block stops every child.
    def on_sigterm(signum, frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_sigterm)

    workdir = tempfile.mkdtemp(prefix="memproxy-emb-backlog-", dir="/tmp")
    processes = Processes()
    try:
        return run(args, workdir, processes)
    except KeyboardInterrupt:
        print("\n# interrupted: stopping the processes", file=sys.stderr)
        return 130
    except RuntimeError as error:
        print(f"\n# error: {error}", file=sys.stderr)
        return 2
    finally:
        processes.stop()
        if args.keep:
            print(f"# kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args, workdir, processes) -> int:
    # 1. The embeddings server.
    port_file = os.path.join(workdir, "emb-port.txt")
    server_argv = [args.python, os.path.join(HERE, "server.py"), "--quiet", "--port-file", port_file]
    if args.server_batch_size:
        server_argv += ["--batch-size", str(args.server_batch_size)]
    server_log = os.path.join(workdir, "embeddings-server.log")
    server = processes.start("embeddings server", server_argv, server_log, cwd=workdir)
    deadline = time.monotonic() + 120
    while not (os.path.exists(port_file) and open(port_file).read().strip()):
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server.py did not start; log:\n{tail(server_log)}")
        time.sleep(0.2)
    emb_port = int(open(port_file).read().strip())
    wait_http(f"http://127.0.0.1:{emb_port}/health", 60, server, "server.py", server_log)

    # 2. The fake upstream.
    fake_port = free_port()
    fake_log = os.path.join(workdir, "fake-upstream.log")
    fake = processes.start("fake upstream", [args.memproxy_bin, "fake-upstream", "--listen", f"127.0.0.1:{fake_port}"],
                           fake_log, cwd=workdir)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", fake_port), timeout=1).close()
            break
        except OSError:
            if fake.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fake upstream did not start; log:\n{tail(fake_log)}")
            time.sleep(0.1)

    # 3. memproxy, with a fresh database; cwd = the temp dir so that no proxy.conf is read.
    proxy_port = free_port()
    database = os.path.join(workdir, "memproxy.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMPROXY_")}
    env.update({
        "MEMPROXY_SERVER_LISTEN": f"127.0.0.1:{proxy_port}",
        "MEMPROXY_UPSTREAM_URL": f"http://127.0.0.1:{fake_port}",
        "MEMPROXY_MEMORY_DATABASE": database,
        "MEMPROXY_LOG_LEVEL": "warning",
        "MEMPROXY_EMBEDDINGS_URL": f"http://127.0.0.1:{emb_port}",
        "MEMPROXY_EMBEDDINGS_MODEL": MODEL,
    })
    if args.batch_size:
        env["MEMPROXY_EMBEDDINGS_BATCH_SIZE"] = str(args.batch_size)
    if args.query_timeout_ms:
        env["MEMPROXY_EMBEDDINGS_QUERY_TIMEOUT_MS"] = str(args.query_timeout_ms)
    proxy_log = os.path.join(workdir, "memproxy.log")
    proxy = processes.start("memproxy", [args.memproxy_bin, "serve"], proxy_log, env=env, cwd=workdir)
    wait_http(f"http://127.0.0.1:{proxy_port}/healthz", 30, proxy, "memproxy", proxy_log)

    batch = args.batch_size or 64
    print(f"# memproxy {args.memproxy_bin} on :{proxy_port}, fake upstream :{fake_port}, "
          f"embeddings server.py :{emb_port} ({MODEL}), workdir {workdir}")
    print(f"# load: {args.rate:g} req/s = {2 * args.rate:g} memories/s offered for {args.minutes:g} min, "
          f"{args.sessions} sessions, {args.threads} threads; embedder batch {batch}")
    print(f"# {'t(s)':>6} {'req/s':>6} {'errors':>6} {'backlog':>8} {'age(s)':>7} {'stored':>8} {'vec/s':>6} "
          f"{'proxy MB':>8} {'proxy cpu%':>10} {'emb MB':>7} {'emb cpu%':>8}  query outcomes")

    samples = [{"phase": "start", "t": 0.0, "stored": 0, "backlog": 0, "backlog_age_s": 0.0,
                "proxy_rss_mb": None, "emb_rss_mb": None}]
    load = Load(proxy_port, args.rate, args.sessions, args.threads, args.seed)
    stats_pids = {"proxy": proxy.pid, "emb": server.pid}
    previous = {"t": 0.0, "sent": 0, "ok": 0, "stored": 0.0, "cpu": {k: proc_stats(p)[1] or 0 for k, p in stats_pids.items()}}
    progress = {"t": 0.0}  # when a request last completed or a vector was last stored

    def check_stall(now):
        # A proxy that answers nothing and stores nothing for --stall-seconds is stuck: say so and stop, rather than
        # measure a dead process for the rest of the run.
        if now - progress["t"] >= args.stall_seconds:
            raise RuntimeError(
                f"memproxy made no progress for {now - progress['t']:.0f} s (no request completed, no vector stored): "
                f"stuck. /healthz and /metrics may still answer; attach a debugger to pid {proxy.pid} "
                "(gdb -p PID -batch -ex 'thread apply all bt') before it is stopped, or rerun with --keep")

    t0 = time.monotonic()
    load.start()

    def sample(phase):
        now = time.monotonic() - t0
        values = scrape(proxy_port)
        sent, ok, errors = load.snapshot()
        stored = values.get("memory_embeddings_stored_total", 0.0)
        span = max(1e-9, now - previous["t"])
        row = {
            "phase": phase, "t": round(now, 1), "sent": sent, "ok": ok, "errors": errors,
            "req_per_s": (sent - previous["sent"]) / span,
            "backlog": int(values.get("memory_embeddings_backlog", 0)),
            "backlog_age_s": values.get("memory_embeddings_backlog_age_seconds", 0.0),
            "stored": int(stored), "vectors_per_s": (stored - previous["stored"]) / span,
            "embed_errors": int(values.get("memory_embeddings_errors_total", 0)),
            "query_outcomes": query_outcomes(values),
        }
        for key, pid in stats_pids.items():
            rss, cpu = proc_stats(pid)
            row[f"{key}_rss_mb"] = rss
            row[f"{key}_cpu_pct"] = None if cpu is None else 100 * (cpu - previous["cpu"][key]) / span
            previous["cpu"][key] = cpu or previous["cpu"][key]
        if ok != previous["ok"] or stored != previous["stored"]:
            progress["t"] = now
        previous.update(t=now, sent=sent, ok=ok, stored=stored)
        samples.append(row)
        outcomes = " ".join(f"{k}={v}" for k, v in sorted(row["query_outcomes"].items()))

        def num(value, width, digits=0):
            return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

        print(f"{phase[0]} {now:>6.0f} {row['req_per_s']:>6.1f} {errors:>6} {row['backlog']:>8} "
              f"{row['backlog_age_s']:>7.1f} {row['stored']:>8} {row['vectors_per_s']:>6.1f} "
              f"{num(row['proxy_rss_mb'], 8)} {num(row['proxy_cpu_pct'], 10)} {num(row['emb_rss_mb'], 7)} "
              f"{num(row['emb_cpu_pct'], 8)}  {outcomes}", flush=True)
        return row

    # Load phase.
    load_seconds = args.minutes * 60
    next_sample = args.sample_seconds
    while next_sample < load_seconds - 1:
        time.sleep(max(0.0, next_sample - (time.monotonic() - t0)))
        check_stall(sample("load")["t"])
        next_sample += args.sample_seconds
    time.sleep(max(0.0, load_seconds - (time.monotonic() - t0)))
    load.stop()
    load_end = time.monotonic() - t0
    end_of_load = sample("load")
    sent, ok, errors = load.snapshot()

    # Drain phase: poll every second, print every sample interval, until the backlog is 0.
    drained_at = None
    last_print = load_end
    while True:
        now = time.monotonic() - t0
        values = scrape(proxy_port)
        backlog = int(values.get("memory_embeddings_backlog", 0))
        if backlog == 0:
            drained_at = now
            break
        if now - load_end > args.drain_timeout:
            break
        if now - last_print >= args.sample_seconds:
            sample("drain")
            last_print = now
            check_stall(now)
        time.sleep(1.0)
    final = sample("drain")

    # The database's own counts (memproxy embeddings status), read while the server still runs.
    status_env = dict(env)
    status = subprocess.run([args.memproxy_bin, "embeddings", "status", "--database", database, "--json"],
                            capture_output=True, text=True, env=status_env, cwd=workdir, timeout=60)
    try:
        db_status = json.loads(status.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        db_status = {"error": (status.stdout + status.stderr).strip()}

    # Results.
    load_samples = [s for s in samples if s["phase"] in ("start", "load")]
    stored_at_load_end = end_of_load["stored"]
    minute_ago = [s for s in load_samples if s["t"] <= load_end - 60 + 1e-6]
    if minute_ago:
        ref = minute_ago[-1]
        last_minute = (stored_at_load_end - ref["stored"]) / max(1e-9, end_of_load["t"] - ref["t"])
    else:
        last_minute = None
    drain_seconds = None if drained_at is None else drained_at - load_end
    drain_rate = None
    if drained_at is not None and drain_seconds and drain_seconds > 2:
        drain_rate = (final["stored"] - stored_at_load_end) / drain_seconds
    max_backlog = max(s["backlog"] for s in samples)
    max_age = max(s["backlog_age_s"] for s in samples)
    rss = [s["proxy_rss_mb"] for s in samples if s["proxy_rss_mb"] is not None]
    emb_rss = [s["emb_rss_mb"] for s in samples if s["emb_rss_mb"] is not None]
    recall = dict(load.recall)
    latencies = load.latencies

    def fmt(value, digits=1, unit=""):
        return "–" if value is None else f"{value:,.{digits}f}{unit}"

    print()
    print(f"### Embedder backlog: {args.rate:g} req/s for {args.minutes:g} min, {args.sessions} sessions, "
          f"batch {batch}, {MODEL} (server.py onnx-int8)")
    print()
    print("| measure | value |")
    print("|---|---:|")
    print(f"| chat requests sent / ok / errors | {sent:,} / {ok:,} / {errors:,} |")
    print(f"| write rate offered (memories/s) | {2 * args.rate:.1f} |")
    print(f"| write rate achieved (memories/s) | {2 * ok / load_end:.1f} |")
    print(f"| embedder throughput over the load (vectors/s) | {stored_at_load_end / load_end:.1f} |")
    print(f"| embedder throughput, last minute of the load (vectors/s) | {fmt(last_minute)} |")
    print(f"| embedder throughput while draining, no load (vectors/s) | {fmt(drain_rate)} |")
    print(f"| backlog at the end of the load (memories) | {end_of_load['backlog']:,} |")
    print(f"| backlog age at the end of the load (s) | {end_of_load['backlog_age_s']:.1f} |")
    print(f"| max backlog (memories) / max age (s), 10 s samples | {max_backlog:,} / {max_age:.1f} |")
    print(f"| drain time after the load stopped (s) | "
          f"{fmt(drain_seconds) if drained_at is not None else f'not drained in {args.drain_timeout:.0f} s'} |")
    print(f"| memories / embedded / queued (`embeddings status`) | {db_status.get('memories', '?'):,} / "
          f"{db_status.get('embedded', '?'):,} / {db_status.get('queued', '?'):,} |"
          if "memories" in db_status else f"| embeddings status | {db_status} |")
    print(f"| embedder errors (`memory_embeddings_errors_total`) | {final['embed_errors']} |")
    outcomes = final["query_outcomes"]
    print(f"| `X-Memory-Recall` hybrid / lexical / absent | {recall.get('hybrid', 0):,} / {recall.get('lexical', 0):,}"
          f" / {recall.get('(none)', 0):,} |")
    print("| query embeddings " + " / ".join(sorted(outcomes)) + " | "
          + " / ".join(f"{outcomes[k]:,}" for k in sorted(outcomes)) + " |")
    if load.memory_errors:
        print(f"| `X-Memory-Error` | {', '.join(f'{k}: {v}' for k, v in sorted(load.memory_errors.items()))} |")
    print(f"| chat latency p50 / p99 (ms) | {fmt(percentile(latencies, 0.5) and 1000 * percentile(latencies, 0.5))}"
          f" / {fmt(percentile(latencies, 0.99) and 1000 * percentile(latencies, 0.99))} |")
    print(f"| memproxy RSS first / last / max (MB) | {fmt(rss[0] if rss else None, 0)} / "
          f"{fmt(rss[-1] if rss else None, 0)} / {fmt(max(rss) if rss else None, 0)} |")
    print(f"| server.py RSS first / last / max (MB) | {fmt(emb_rss[0] if emb_rss else None, 0)} / "
          f"{fmt(emb_rss[-1] if emb_rss else None, 0)} / {fmt(max(emb_rss) if emb_rss else None, 0)} |")
    if load.errors:
        print(f"\n# request errors: {load.errors}")
    if load.late_starts:
        print(f"# {load.late_starts} requests started more than 1 s late (the client threads could not keep up)")

    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w") as handle:
            json.dump({"args": vars(args), "samples": samples, "db_status": db_status, "recall": recall,
                       "errors": load.errors, "memory_errors": load.memory_errors, "load_seconds": load_end,
                       "drain_seconds": drain_seconds, "last_minute_vectors_per_s": last_minute,
                       "drain_vectors_per_s": drain_rate}, handle, indent=1)
    if not errors and ok and db_status.get("queued") == 0:
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
