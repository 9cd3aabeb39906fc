"""Benchmark trace capture over HTTP: `POST /api/traces/batch` and `POST /api/traces`.

    .venv/bin/python -m bench.bench_api                 # both, on a fresh tunixrt_bench
    .venv/bin/python -m bench.bench_api --only batch --batches 60
    .venv/bin/python -m bench.bench_api --only single --singles 5000

Starts granian serving `tunixrt.wsgi:application` on 127.0.0.1:8765 as bin/serve
runs it, with one worker process of `--threads` blocking threads (4 by default,
as deployed; DEBUG=false), against the `tunixrt_bench` database, creates a
`bench` user with a DRF token, and drives it from this process with
http.client (stdlib) over one connection, which granian keeps alive between
requests.

* batch: `--batches` requests of 1,000 new traces each (bodies generated
  before timing, ~0.9 MB each), sent back to back; throughput is traces stored
  / wall time of the whole run. Every response is checked (201, 1,000 ids).
  The worker's memory (VmRSS, and VmHWM: its peak RSS, from /proc/<pid>/status)
  is read after boot (one GET served), after the first batch and at the end.
* single: `--singles` sequential POSTs of one new trace each; latency
  percentiles are taken client-side around request + full response read.

Both start with a few warm-up requests that are not counted. The traces are
added to whatever `tunixrt_bench` holds (created and migrated if missing;
`--reset` re-creates it empty first).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import time
from typing import Any

import orjson

from bench import common
from bench.gen_traces import Generator

BATCH_TARGET = 6_000
BATCH_AIM = 8_000
SINGLE_P95_TARGET_MS = 6.0
WORKER_PEAK_RSS_TARGET_MB = 130
BATCH_SIZE = 1000


class Client:
    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json",
                        "Accept": "application/json"}

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", path, body=body, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
        return resp.status, data


def worker_memory(main_pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of the web server's one worker process, in MB."""
    pids = common.worker_pids(main_pid)
    assert len(pids) == 1, pids
    return common.proc_memory_mb(pids[0])


def bench_batch(client: Client, batches: int, start: int, main_pid: int) -> dict[str, Any]:
    gen = Generator(seed=start)
    warmup = 3
    bodies = [
        orjson.dumps({"traces": [gen.trace(start + b * BATCH_SIZE + i) for i in range(BATCH_SIZE)]})
        for b in range(batches + warmup)
    ]
    memory = {"after_boot": worker_memory(main_pid)}
    for n, body in enumerate(bodies[:warmup]):
        status, data = client.post("/api/traces/batch", body)
        assert status == 201, (status, data[:500])
        if n == 0:
            memory["after_first_batch"] = worker_memory(main_pid)
    latencies = []
    started = time.perf_counter()
    for body in bodies[warmup:]:
        t0 = time.perf_counter()
        status, data = client.post("/api/traces/batch", body)
        latencies.append(time.perf_counter() - t0)
        result = orjson.loads(data)
        assert status == 201, (status, data[:500])
        assert result["created"] == BATCH_SIZE, result["created"]
        assert len(result["ids"]) == BATCH_SIZE
    wall = time.perf_counter() - started
    memory["after_all"] = worker_memory(main_pid)
    return {
        "requests": batches,
        "traces": batches * BATCH_SIZE,
        "body_mb_avg": round(sum(len(b) for b in bodies) / len(bodies) / 1e6, 2),
        "wall_s": round(wall, 2),
        "traces_per_s": round(batches * BATCH_SIZE / wall),
        "latency": common.summary_ms(latencies),
        "worker_memory_mb": memory,
        "worker_peak_rss_mb": memory["after_all"]["vmhwm"],
    }


def bench_single(client: Client, count: int, start: int) -> dict[str, Any]:
    gen = Generator(seed=start)
    warmup = 200
    bodies = [orjson.dumps(gen.trace(start + i)) for i in range(count + warmup)]
    for body in bodies[:warmup]:
        status, data = client.post("/api/traces", body)
        assert status == 201, (status, data[:500])
    latencies = []
    started = time.perf_counter()
    for body in bodies[warmup:]:
        t0 = time.perf_counter()
        status, data = client.post("/api/traces", body)
        latencies.append(time.perf_counter() - t0)
        assert status == 201, (status, data[:500])
    wall = time.perf_counter() - started
    # One duplicate round as well: identical traces answer 200 with the stored id.
    dup_lat = []
    for body in bodies[warmup : warmup + min(1000, count)]:
        t0 = time.perf_counter()
        status, data = client.post("/api/traces", body)
        dup_lat.append(time.perf_counter() - t0)
        assert status == 200, (status, data[:500])
    return {
        "requests": count,
        "wall_s": round(wall, 2),
        "requests_per_s": round(count / wall),
        "latency": common.summary_ms(latencies),
        "duplicate_latency": common.summary_ms(dup_lat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["batch", "single"], default=None)
    parser.add_argument("--batches", type=int, default=60, help="timed batch requests (1,000 traces each)")
    parser.add_argument("--singles", type=int, default=5000, help="timed single POSTs")
    parser.add_argument("--reset", action="store_true", help="re-create the database empty first")
    parser.add_argument("--port", type=int, default=common.BENCH_PORT)
    parser.add_argument("--threads", type=int, default=4,
                        help="threads in the web server's one worker process (granian's --blocking-threads; "
                             "4, as `make run` and the Dockerfile use)")
    parser.add_argument("--wait-quiet", type=float, default=0, help="wait up to N s for a quiet machine")
    args = parser.parse_args()
    if not 1 <= args.batches <= 500 or not 1 <= args.singles <= 100_000:
        parser.error("--batches must be 1..500 and --singles 1..100,000")
    if args.reset or not common.db_exists():
        common.reset_db()
    token = common.bench_token()
    # Trace numbers far from those of the import files, distinct per run.
    base = 50_000_000 + int(time.time()) % 100_000 * 1000 * 1000
    results: dict[str, Any] = {
        "stored_rows_before": common.trace_count(),
        "threads": args.threads,
        "loadavg_before": common.wait_quiet(args.wait_quiet),
    }
    with common.web_server(workers=1, port=args.port, threads=args.threads) as main_pid:
        client = Client(args.port, token)
        if args.only in (None, "batch"):
            common.log(f"batch: {args.batches} x {BATCH_SIZE} traces")
            results["batch"] = bench_batch(client, args.batches, base, main_pid)
            common.log(json.dumps(results["batch"]))
        if args.only in (None, "single"):
            common.log(f"single: {args.singles} POSTs")
            results["single"] = bench_single(client, args.singles, base + 600_000)
            common.log(json.dumps(results["single"]))
    results["loadavg_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    if "batch" in results:
        rate = results["batch"]["traces_per_s"]
        print(f"batch: {rate:,} traces/s (target {BATCH_TARGET:,}, aim {BATCH_AIM:,}): "
              f"{'OK' if rate >= BATCH_TARGET else 'MISSED'}")
        peak = results["batch"]["worker_peak_rss_mb"]
        print(f"batch: worker peak RSS {peak} MB (target < {WORKER_PEAK_RSS_TARGET_MB}): "
              f"{'OK' if peak < WORKER_PEAK_RSS_TARGET_MB else 'MISSED'}")
    if "single" in results:
        single = results["single"]
        p95 = single["latency"]["p95_ms"]
        print(f"single: p95 {p95} ms (target < {SINGLE_P95_TARGET_MS}): "
              f"{'OK' if p95 < SINGLE_P95_TARGET_MS else 'MISSED'}, {single['requests_per_s']} req/s")
    common.OUT.mkdir(parents=True, exist_ok=True)
    name = f"bench_api{'-' + args.only if args.only else ''}.json"
    (common.OUT / name).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
