"""Benchmark `manage.py import_traces` on PostgreSQL: throughput and peak RSS.

    .venv/bin/python -m bench.bench_import                    # 100k, then 300k traces
    .venv/bin/python -m bench.bench_import --sizes 100000     # one size only

For each size it generates the file (bench/out/traces-<n>-0.jsonl, cached;
bench.gen_traces, ~0.9 KB a trace), re-creates the `tunixrt_bench_import`
database (empty, migrated, search and tag indexes included; its own database so
that the 1M traces of bench_list in `tunixrt_bench` survive), runs

    python manage.py import_traces FILE --quiet-progress

as a child process with DEBUG=false, and reads the child's peak RSS from
wait4(). Traces/s is what the command itself reports (records read / elapsed,
the time from opening the files to the last commit), and wall time of the whole
process (Python start-up and Django set-up included) is shown next to it.

Bulk imports leave the full-text documents to the search indexer (a worker;
traces.searchindex). The benchmark then runs `manage.py index_traces` and
reports how long the imported traces took to become searchable as well.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from pathlib import Path

from bench import common
from bench.gen_traces import generate

# BENCH_IMPORT_DB (a name starting with tunixrt_bench) keeps runs of several checkouts apart.
common.BENCH_DB = os.environ.get("BENCH_IMPORT_DB", "tunixrt_bench_import")

TARGET_RATE = 15_000
TARGET_RSS_MB = 300


def dataset(count: int, start: int) -> Path:
    path = common.OUT / f"traces-{count}-{start}.jsonl"
    if not path.exists():
        common.log(f"generating {count:,} traces -> {path}")
        generate(path, count, start=start)
    return path


def run_import(path: Path, extra: list[str]) -> dict[str, float | int | str]:
    cmd = [common.PY, str(common.ROOT / "manage.py"), "import_traces", str(path), "--quiet-progress", *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=common.ROOT, env=common.app_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # wait4() gives this child's own rusage (peak RSS in KiB on Linux).
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"import failed ({proc.returncode}):\n{out}\n{err}")
    m = re.search(r"([\d,]+) read, ([\d,]+) created, ([\d,]+) duplicates, ([\d,]+) bad in ([\d.]+)s", out)
    if not m:
        raise SystemExit(f"unexpected output: {out!r}")
    read, created, dups, bad = (int(g.replace(",", "")) for g in m.groups()[:4])
    elapsed = float(m.group(5))
    return {
        "file": path.name,
        "file_mib": round(path.stat().st_size / 2**20, 1),
        "read": read,
        "created": created,
        "duplicates": dups,
        "bad": bad,
        "elapsed_s": elapsed,
        "traces_per_s": round(read / elapsed),
        "process_wall_s": round(wall, 2),
        "process_traces_per_s": round(read / wall),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "user_cpu_s": round(usage.ru_utime, 2),
        "stored_rows": common.trace_count(),
        **run_indexing(),
    }


def run_indexing() -> dict[str, float | int]:
    """Make the imported traces searchable with `manage.py index_traces`, as a worker would."""
    cmd = [common.PY, str(common.ROOT / "manage.py"), "index_traces"]
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=common.ROOT, env=common.app_env(), capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    m = re.search(r"([\d,]+) traces indexed; ([\d,]+) waiting", out.stdout)
    if not m:
        raise SystemExit(f"unexpected output: {out.stdout!r}")
    indexed = int(m.group(1).replace(",", ""))
    return {
        "search_indexed": indexed,
        "search_waiting_after": int(m.group(2).replace(",", "")),
        "search_index_wall_s": round(wall, 2),
        "search_indexed_per_s": round(indexed / wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,300000", help="comma-separated trace counts")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (fresh database each)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--wait-quiet", type=float, default=0, help="wait up to N s for a quiet machine")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if not sizes or any(not 1 <= s <= 2_000_000 for s in sizes) or not 1 <= args.repeat <= 10:
        parser.error("sizes must be 1..2,000,000 and --repeat 1..10")
    extra = ["--batch-size", str(args.batch_size)] if args.batch_size else []
    results = []
    for size in sizes:
        path = dataset(size, start=0)
        for n in range(args.repeat):
            common.reset_db()
            load = common.wait_quiet(args.wait_quiet)
            common.log(f"importing {path.name} (run {n + 1}/{args.repeat}), load average {load:.2f}")
            result = run_import(path, extra)
            result["loadavg_1m_before"] = round(load, 2)
            result["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
            common.log(json.dumps(result))
            results.append(result)
    print(json.dumps(results, indent=2))
    for r in results:
        ok_rate = "OK" if int(r["traces_per_s"]) >= TARGET_RATE else "MISSED"
        ok_rss = "OK" if float(r["peak_rss_mb"]) < TARGET_RSS_MB else "MISSED"
        print(f"{r['file']}: {r['traces_per_s']:,} traces/s (target {TARGET_RATE:,}: {ok_rate}), "
              f"peak RSS {r['peak_rss_mb']} MB (target < {TARGET_RSS_MB}: {ok_rss})")
    common.OUT.mkdir(parents=True, exist_ok=True)
    (common.OUT / "bench_import.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
