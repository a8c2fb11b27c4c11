#!/usr/bin/env python3
"""Open N concurrent SSE streams through memproxy and check that each one arrives whole.

Standard library only (asyncio + raw sockets, HTTP/1.1 with chunked decoding). Each stream is
`GET /v1/test/sse?events=E&delay_ms=D`; a stream counts as correct when it got status 200, the events
`{"n":0}` .. `{"n":E-1}` in order, then `[DONE]`, and a clean end of the chunked body.

Prints one JSON object: {"streams", "ok", "failed", "errors", "duration_s", "first_byte_p50_s", ...}.
Bounded: every stream has a deadline (--timeout), and the whole run ends when all streams end.
"""

import argparse
import asyncio
import json
import sys
import time


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed inside a chunked body")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            # Trailers (none expected) end with an empty line.
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return bytes(body)
        data = await reader.readexactly(size + 2)
        body += data[:-2]


async def one_stream(host: str, port: int, path: str, events: int, timeout: float, started: list) -> tuple:
    t0 = time.monotonic()
    writer = None
    try:
        async def run():
            nonlocal writer
            reader, writer = await asyncio.open_connection(host, port)
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(request.encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            started.append(time.monotonic() - t0)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            if status != 200:
                return False, f"status {status}"
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = await read_chunked(reader)
            elif "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            else:
                body = await reader.read()
            data = [line[len(b"data: "):] for line in body.split(b"\n") if line.startswith(b"data: ")]
            expected = [json.dumps({"n": i}, separators=(",", ":")).encode() for i in range(events)] + [b"[DONE]"]
            if data != expected:
                return False, f"got {len(data)} data lines, expected {len(expected)}"
            return True, ""

        ok, why = await asyncio.wait_for(run(), timeout)
        return ok, why, time.monotonic() - t0
    except Exception as error:  # noqa: BLE001 - every failure is counted and reported
        return False, f"{type(error).__name__}: {error}", time.monotonic() - t0
    finally:
        if writer is not None:
            writer.close()


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--delay-ms", type=int, default=250)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        sys.exit("streams.py only targets loopback addresses")
    path = f"/v1/test/sse?events={args.events}&delay_ms={args.delay_ms}"
    started: list = []
    t0 = time.monotonic()
    results = await asyncio.gather(
        *(one_stream(args.host, args.port, path, args.events, args.timeout, started) for _ in range(args.streams))
    )
    total = time.monotonic() - t0
    ok = sum(1 for r in results if r[0])
    errors: dict = {}
    for r in results:
        if not r[0]:
            errors[r[1]] = errors.get(r[1], 0) + 1
    durations = sorted(r[2] for r in results if r[0])
    started.sort()

    def pct(values, p):
        return round(values[min(len(values) - 1, int(p * len(values)))], 3) if values else None

    print(json.dumps({
        "streams": args.streams,
        "ok": ok,
        "failed": args.streams - ok,
        "errors": errors,
        "duration_s": round(total, 2),
        "ideal_stream_s": round((args.events - 1) * args.delay_ms / 1000, 2),
        "stream_p50_s": pct(durations, 0.5),
        "stream_max_s": round(durations[-1], 3) if durations else None,
        "first_byte_p50_s": pct(started, 0.5),
        "first_byte_max_s": round(started[-1], 3) if started else None,
        # ~1 s is the kernel's first SYN retransmission: the listen queue was full when the stream connected.
        "first_byte_over_900ms": sum(1 for t in started if t > 0.9),
    }))
    return 0 if ok == args.streams else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
