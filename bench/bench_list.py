"""Benchmark `GET /api/traces` over 1,000,000 stored traces, end to end through the web server (granian).

    .venv/bin/python -m bench.bench_list --setup     # (re)load 1M traces, then measure
    .venv/bin/python -m bench.bench_list             # measure what tunixrt_bench holds

--setup re-creates `tunixrt_bench`, generates 4 files of 250,000 traces
(bench.gen_traces; 8 sources, skewed; "number" in ~1/3 of the traces,
"zephyrine" in ~1/10,000) and loads them with `manage.py import_traces`,
builds their search documents with `manage.py index_traces` (what a worker
does after a bulk import), then runs VACUUM ANALYZE (autovacuum is off on this
server, and a fresh bulk load has no statistics until then).

Measured, each after 5 warm-up requests, `--requests` sequential GETs from this
process with http.client (one kept-alive connection) against granian serving
`tunixrt.wsgi:application` with one worker process of 4 threads, as bin/serve
runs it (DEBUG=false, token auth), latency taken around request + full response
read:

* first page: `/api/traces`
* deep page: `/api/traces?cursor=C`, C = encode_cursor() of the row at depth
  500,000 in newest-first order (found once with OFFSET; walking 25,000 pages
  would take too long)
* by source: `?source=gsm8k` (~40 % of rows) and `?source=redteam` (~0.1 %)
* by text: `?q=number` (common, ~1/3), `?q=kadimnene` (a vocabulary word in
  ~0.4 % of traces: the band where PostgreSQL walks the newest-first index
  and checks each row) and `?q=zephyrine` (rare, ~1/10,000)
* the second page of each filter, through its `next_cursor`
* the other orders: `?sort=oldest`, `most_steps`, `fewest_steps` (and page 2)
* what the trace list loads beside its rows, `/api/traces/summary` (how many
  match, exact up to 100,000 and PostgreSQL's estimate above; top sources and
  tags among the newest 100,000 matching): unfiltered, by source, tag and text
* the pages themselves, with a session cookie (after `collectstatic`, as
  deployed): the list filtered and sorted, its summary fragment, and a trace
  opened from it (previous / next in that list)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import time
import urllib.parse
from typing import Any

import orjson

from bench import common
from bench.gen_traces import COMMON_WORD, RARE_WORD, generate

TOTAL = 1_000_000
FILES = 4
DEPTH = 500_000
TARGET_PAGE_P95_MS = 50.0
TARGET_FILTER_P95_MS = 300.0
MID_WORD = "kadimnene"  # rank 2,983 of 3,000 in gen_traces' Zipf vocabulary: ~0.4 % of traces


def setup() -> None:
    common.reset_db()
    per_file = TOTAL // FILES
    paths = []
    for n in range(FILES):
        path = common.OUT / f"traces-{per_file}-{1_000_000_000 + n * per_file}.jsonl"
        if not path.exists():
            common.log(f"generating {path.name}")
            generate(path, per_file, start=1_000_000_000 + n * per_file, seed=n)
        paths.append(path)
    for path in paths:
        common.log(f"importing {path.name}")
        common.manage("import_traces", str(path), "--quiet-progress")
    # Bulk imports leave the full-text documents to the search indexer (a worker in a
    # deployment; the bench has none): build them all before measuring searches.
    started = time.perf_counter()
    common.log("index_traces")
    common.manage("index_traces")
    common.log(f"indexed in {time.perf_counter() - started:.0f} s")
    common.log("VACUUM ANALYZE")
    common.vacuum_analyze()


def deep_cursor(depth: int) -> str:
    code = (
        "from traces.models import Trace\n"
        "from tunixrt.pagination import encode_cursor\n"
        f"row = Trace.objects.order_by('-created_at', '-id').only('created_at')[{depth - 1}]\n"
        "print(encode_cursor(row.created_at, row.pk))\n"
    )
    return common.manage("shell", "-c", code, capture=True).strip().splitlines()[-1]


class Client:
    def __init__(self, port: int, token: str = "", session: str = "") -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        if session:
            self.headers = {"Cookie": f"sessionid={session}", "Accept": "text/html"}
        else:
            self.headers = {"Authorization": f"Token {token}", "Accept": "application/json"}

    def get(self, path: str) -> tuple[int, bytes]:
        self.conn.request("GET", path, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
        return resp.status, data


def measure(client: Client, path: str, requests: int) -> dict[str, Any]:
    for _ in range(5):
        status, data = client.get(path)
        assert status == 200, (path, status, data[:300])
    latencies = []
    for _ in range(requests):
        t0 = time.perf_counter()
        status, data = client.get(path)
        latencies.append(time.perf_counter() - t0)
        assert status == 200, (path, status, data[:300])
    described: dict[str, Any] = {"path": path if len(path) < 80 else path[:77] + "..."}
    if data.startswith(b"{"):
        body = orjson.loads(data)
        if "results" in body:
            described.update(rows=len(body["results"]), next_cursor=body["next_cursor"])
        else:  # the summary
            described.update(rows=body["count"], exact=body["exact"], next_cursor=None)
    else:
        described.update(rows=data.count(b"<tr"), bytes=len(data), next_cursor=None)
    return {**described, **common.summary_ms(latencies)}


def some_trace_id(source: str) -> int:
    return int(common.psql(
        f"SELECT id FROM traces_trace WHERE source = '{source}' ORDER BY step_count DESC, id DESC "  # noqa: S608
        "OFFSET 1000 LIMIT 1",
        db=common.BENCH_DB,
    ))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--setup", action="store_true", help="re-create and load 1M traces first")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per query")
    parser.add_argument("--port", type=int, default=common.BENCH_PORT)
    parser.add_argument("--wait-quiet", type=float, default=0, help="wait up to N s for a quiet machine")
    args = parser.parse_args()
    if not 1 <= args.requests <= 10_000:
        parser.error("--requests must be 1..10,000")
    if args.setup or not common.db_exists():
        setup()
    count = common.trace_count()
    if count < DEPTH + 1000:
        raise SystemExit(f"tunixrt_bench holds {count:,} traces; run with --setup")
    token = common.bench_token()
    cursor = deep_cursor(DEPTH)
    cases = {
        "first page": ("/api/traces", TARGET_PAGE_P95_MS),
        f"page at depth {DEPTH:,} (cursor)": (f"/api/traces?cursor={cursor}", TARGET_PAGE_P95_MS),
        "source=gsm8k (~40%)": ("/api/traces?source=gsm8k", TARGET_FILTER_P95_MS),
        "source=redteam (~0.1%)": ("/api/traces?source=redteam", TARGET_FILTER_P95_MS),
        f"q={COMMON_WORD} (common)": (f"/api/traces?q={COMMON_WORD}", TARGET_FILTER_P95_MS),
        f"q={MID_WORD} (~0.4%)": (f"/api/traces?q={MID_WORD}", TARGET_FILTER_P95_MS),
        f"q={RARE_WORD} (rare)": (f"/api/traces?q={RARE_WORD}", TARGET_FILTER_P95_MS),
        "sort=oldest": ("/api/traces?sort=oldest", TARGET_PAGE_P95_MS),
        "sort=most_steps": ("/api/traces?sort=most_steps", TARGET_PAGE_P95_MS),
        "sort=fewest_steps": ("/api/traces?sort=fewest_steps", TARGET_PAGE_P95_MS),
        "source=gsm8k&sort=most_steps": ("/api/traces?source=gsm8k&sort=most_steps", TARGET_FILTER_P95_MS),
        "summary (count, facets)": ("/api/traces/summary", TARGET_FILTER_P95_MS),
        "summary source=gsm8k": ("/api/traces/summary?source=gsm8k", TARGET_FILTER_P95_MS),
        "summary source=redteam": ("/api/traces/summary?source=redteam", TARGET_FILTER_P95_MS),
        "summary tag=hard": ("/api/traces/summary?tag=hard", TARGET_FILTER_P95_MS),
        f"summary q={COMMON_WORD}": (f"/api/traces/summary?q={COMMON_WORD}", TARGET_FILTER_P95_MS),
        f"summary q={RARE_WORD}": (f"/api/traces/summary?q={RARE_WORD}", TARGET_FILTER_P95_MS),
    }
    opened = some_trace_id("gsm8k")
    pages = {
        "page: list source=gsm8k, most steps (50 rows)": (
            "/traces/?source=gsm8k&sort=most_steps", TARGET_FILTER_P95_MS
        ),
        "page: its summary fragment": ("/traces/summary/?source=gsm8k", TARGET_FILTER_P95_MS),
        "page: a trace opened from it (previous/next)": (
            f"/traces/{opened}/?source=gsm8k&sort=most_steps", TARGET_FILTER_P95_MS
        ),
    }
    common.manage("collectstatic", "--noinput", "-v0")
    session = common.bench_session()
    load = common.wait_quiet(args.wait_quiet)
    results: dict[str, Any] = {"stored_rows": count, "loadavg_before": load, "cases": {}}
    with common.web_server(workers=1, port=args.port):
        client = Client(args.port, token)
        for name, (path, target) in list(cases.items()):
            result = measure(client, path, args.requests)
            result["target_p95_ms"] = target
            results["cases"][name] = result
            common.log(f"{name}: {json.dumps(result)}")
            if result.get("next_cursor") and name != "first page" and "depth" not in name:
                sep = "&" if "?" in path else "?"
                page2 = f"{path}{sep}cursor={urllib.parse.quote(result['next_cursor'])}"
                result2 = measure(client, page2, args.requests)
                result2["target_p95_ms"] = target
                results["cases"][f"{name}, page 2"] = result2
                common.log(f"{name}, page 2: {json.dumps(result2)}")
        pager = Client(args.port, session=session)
        for name, (path, target) in pages.items():
            result = measure(pager, path, args.requests)
            result["target_p95_ms"] = target
            results["cases"][name] = result
            common.log(f"{name}: {json.dumps(result)}")
    results["loadavg_after"] = os.getloadavg()[0]
    print(json.dumps(results, indent=2))
    for name, r in results["cases"].items():
        verdict = "OK" if r["p95_ms"] < r["target_p95_ms"] else "MISSED"
        print(f"{name:40s} p50 {r['p50_ms']:7.2f}  p95 {r['p95_ms']:7.2f}  p99 {r['p99_ms']:7.2f} ms  "
              f"({r['rows']} rows; target p95 < {r['target_p95_ms']:.0f} ms: {verdict})")
    common.OUT.mkdir(parents=True, exist_ok=True)
    (common.OUT / "bench_list.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
