"""Benchmark `manage.py import_preferences` on PostgreSQL: pairs/s and peak RSS.

    .venv/bin/python -m bench.bench_pairs                       # 100k pairs
    .venv/bin/python -m bench.bench_pairs --sizes 100000,300000 --repeat 3

For each size it writes (and caches) bench/out/pairs-<n>.jsonl, deterministic:
a prompt of 12–40 words, a chosen answer of 2–5 numbered steps and an answer, a
rejected one with a wrong answer, a small meta (~0.9 KB a pair, about a trace's
size). It re-creates the `tunixrt_bench_pairs` database (empty, migrated), runs

    python manage.py import_preferences FILE --quiet-progress

as a child process with DEBUG=false (bench.common.app_env), and reads the
child's peak RSS from wait4(). Pairs/s is what the command reports (records read
/ time from opening the file to the last commit); the wall time of the whole
process (Python start-up and Django set-up included) is shown beside it. A second
import of the same file (every pair a duplicate) is timed too.

With `--dataset`, after the last import it builds a preference dataset of up to
100,000 pairs (seeded random, 10 % validation) with `manage.py build_dataset
--kind preference` and exports it as `dpo` (`manage.py export_dataset`, Gemma
turns) in fresh processes, timing each and reading the export's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import time
from pathlib import Path

import orjson

from bench import common

common.BENCH_DB = "tunixrt_bench_pairs"

TARGET_RATE = 10_000
WORDS = [
    *("number", "total", "apples", "train", "speed", "distance", "price", "share", "ratio", "sum"),
    *("difference", "product", "each", "more", "less", "twice", "half", "hour", "minute", "mile"),
    *("cost", "pays", "buys", "sells", "left", "remaining", "average", "percent"),
]


def generate(path: Path, count: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for n in range(count):
            a, b = rng.randint(2, 999), rng.randint(2, 999)
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 40)))
            prompt = f"Problem {n}: {words}. What is {a} + {b}?"
            steps = [
                f"{i}. {' '.join(rng.choice(WORDS) for _ in range(rng.randint(6, 18)))}"
                for i in range(1, rng.randint(2, 5) + 1)
            ]
            body = "\n".join(["Reasoning:", *steps, f"{len(steps) + 1}. {a} + {b} = "])
            record = {
                "prompt": prompt,
                "chosen": f"{body}{a + b}\nAnswer: {a + b}",
                "rejected": f"{body}{a + b + 1}\nAnswer: {a + b + 1}",
                "meta": {"generator": "bench", "n": n},
            }
            out.write(orjson.dumps(record) + b"\n")


def pairs_file(count: int) -> Path:
    path = common.OUT / f"pairs-{count}.jsonl"
    if not path.exists():
        common.log(f"generating {count:,} pairs -> {path}")
        generate(path, count)
    return path


def run_import(path: Path, extra: list[str]) -> dict[str, float | int | str]:
    cmd = [common.PY, str(common.ROOT / "manage.py"), "import_preferences", str(path), "--quiet-progress", *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=common.ROOT, env=common.app_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    if code != 0:
        raise SystemExit(f"import failed ({code}):\n{out}\n{err}")
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
        "pairs_per_s": round(read / elapsed),
        "process_wall_s": round(wall, 2),
        "process_pairs_per_s": round(read / wall),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }


def timed_manage(*args: str) -> tuple[str, float, float]:
    """Run a manage.py command as a child; (stdout + stderr, wall seconds, peak RSS in MB)."""
    cmd = [common.PY, str(common.ROOT / "manage.py"), *args]
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=common.ROOT, env=common.app_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out = (proc.stdout.read() if proc.stdout else "") + (proc.stderr.read() if proc.stderr else "")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{args[0]} failed:\n{out}")
    return out, wall, usage.ru_maxrss / 1024


def run_dataset() -> dict[str, float | int | str]:
    name = f"bench-prefs-{int(time.time())}"
    out, build_wall, _ = timed_manage(
        "build_dataset",
        name,
        "--kind",
        "preference",
        "--strategy",
        "random",
        "--seed",
        "1",
        "--limit",
        "100000",
        "--validation-fraction",
        "0.1",
    )
    key = re.search(r"Built (\S+):", out)
    if key is None:
        raise SystemExit(f"unexpected output: {out!r}")
    target = common.OUT / f"{name}.dpo.jsonl"
    out, export_wall, rss = timed_manage("export_dataset", key.group(1), str(target), "--format", "dpo")
    written = re.search(r"([\d,]+) records written", out)
    if written is None:
        raise SystemExit(f"unexpected output: {out!r}")
    records = int(written.group(1).replace(",", ""))
    size = target.stat().st_size
    target.unlink()
    return {
        "dataset": key.group(1),
        "build_process_wall_s": round(build_wall, 2),
        "dpo_records": records,
        "dpo_mib": round(size / 2**20, 1),
        "export_process_wall_s": round(export_wall, 2),
        "export_records_per_s": round(records / export_wall),
        "export_peak_rss_mb": round(rss, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000", help="comma-separated pair counts")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (fresh database each)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--wait-quiet", type=float, default=0, help="wait up to N s for a quiet machine")
    parser.add_argument("--dataset", action="store_true", help="then build and export a preference dataset")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if not sizes or any(not 1 <= s <= 2_000_000 for s in sizes) or not 1 <= args.repeat <= 10:
        parser.error("sizes must be 1..2,000,000 and --repeat 1..10")
    extra = ["--batch-size", str(args.batch_size)] if args.batch_size else []
    results = []
    for size in sizes:
        path = pairs_file(size)
        for n in range(args.repeat):
            common.reset_db()
            load = common.wait_quiet(args.wait_quiet)
            common.log(f"importing {path.name} (run {n + 1}/{args.repeat}), load average {load:.2f}")
            result = run_import(path, extra)
            again = run_import(path, extra)  # every pair is stored: the duplicate path
            result["again_pairs_per_s"] = again["pairs_per_s"]
            result["again_duplicates"] = again["duplicates"]
            result["loadavg_1m_before"] = round(load, 2)
            result["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
            common.log(json.dumps(result))
            results.append(result)
    if args.dataset:
        result = run_dataset()
        common.log(json.dumps(result))
        results.append(result)
    print(json.dumps(results, indent=2))
    for r in results:
        if "pairs_per_s" not in r:
            print(
                f"{r['dataset']}: built in {r['build_process_wall_s']} s (process), exported {r['dpo_records']:,} "
                f"dpo records in {r['export_process_wall_s']} s, peak RSS {r['export_peak_rss_mb']} MB"
            )
            continue
        ok = "OK" if int(r["pairs_per_s"]) >= TARGET_RATE else "MISSED"
        print(
            f"{r['file']}: {r['pairs_per_s']:,} pairs/s (target {TARGET_RATE:,}: {ok}), "
            f"again (all duplicates) {r['again_pairs_per_s']:,}/s, peak RSS {r['peak_rss_mb']} MB"
        )
    common.OUT.mkdir(parents=True, exist_ok=True)
    (common.OUT / "bench_pairs.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
