"""Dataset benchmarks on the 1,000,000-trace bench database (PostgreSQL).

    .venv/bin/python bench/bench_datasets.py build     # a 100,000-trace dataset from 1M traces
    .venv/bin/python bench/bench_datasets.py export    # stream an export: records/s and peak RSS

Needs `tunixrt_bench` filled by `bench/bench_list.py` (1M traces). Each build
creates a new version of `bench-build` (datasets are immutable); `cleanup`
deletes them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PY, ROOT, app_env, log, trace_count


def django_setup() -> None:
    os.environ.update(app_env())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tunixrt.settings")
    import django

    django.setup()


def build(strategy: str, limit: int) -> dict[str, Any]:
    from traces.datasets.building import build_dataset, validate_build_spec

    spec = validate_build_spec(
        {
            "name": "bench-build",
            "strategy": strategy,
            "seed": 7 if strategy == "random" else None,
            "limit": limit,
            "validation_fraction": 0.1,
            "validation_seed": 3,
        }
    )
    started = time.perf_counter()
    dataset = build_dataset(spec, inline_limit=10**9)
    seconds = time.perf_counter() - started
    return {
        "key": dataset.key,
        "strategy": strategy,
        "traces_in_db": trace_count(),
        "members": dataset.stats["count"],
        "validation": dataset.stats["validation"],
        "seconds": round(seconds, 2),
    }


def export_child(key: str, fmt: str) -> None:
    """Runs in a fresh process so that its peak RSS is the export's alone."""
    from traces.models import Dataset

    dataset = Dataset.objects.by_key(key)
    started = time.perf_counter()
    count = 0
    size = 0
    from traces.datasets.exporting import iter_dataset_lines

    with open(os.devnull, "wb") as sink:
        for line in iter_dataset_lines(dataset, fmt, "all"):
            sink.write(line)
            count += 1
            size += len(line)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"records": count, "bytes": size, "seconds": round(seconds, 2),
                      "records_per_s": round(count / seconds), "peak_rss_mb": round(peak, 1)}))


def export(key: str) -> dict[str, Any]:
    results = {}
    for fmt in ("trace", "tunix_sft"):
        out = subprocess.run(
            [PY, __file__, "export-child", "--key", key, "--format", fmt],
            cwd=ROOT, env=app_env(), check=True, capture_output=True, text=True,
        )
        results[fmt] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def cleanup() -> int:
    from traces.models import Dataset

    deleted = 0
    for dataset in Dataset.objects.filter(name="bench-build"):
        dataset.delete()
        deleted += 1
    return deleted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["build", "export", "export-child", "cleanup"])
    parser.add_argument("--strategy", default="random", choices=["latest", "random", "all"])
    parser.add_argument("--limit", type=int, default=100_000)
    parser.add_argument("--key", default="")
    parser.add_argument("--format", default="trace")
    args = parser.parse_args()
    django_setup()
    if args.what == "export-child":
        export_child(args.key, args.format)
        return
    if args.what == "build":
        result: Any = build(args.strategy, args.limit)
    elif args.what == "export":
        from traces.models import Dataset

        key = args.key or Dataset.objects.filter(name="bench-build").order_by("-version").first().key  # type: ignore[union-attr]
        result = {"key": key, **export(key)}
    else:
        result = {"deleted": cleanup()}
    log(json.dumps(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
