"""Leaderboard latency with 10,000 runs and 1,000,000 predictions (PostgreSQL), and evaluation throughput.

    .venv/bin/python bench/bench_leaderboard.py setup      # database tunixrt_bench_eval, synthetic rows
    .venv/bin/python bench/bench_leaderboard.py query      # GET /api/leaderboard through granian, p95
    .venv/bin/python bench/bench_leaderboard.py throughput # items/s of a real evaluation, tiny preset

The synthetic rows are written with COPY (10,000 runs on one dataset, each with
one completed evaluation of a 100-item eval set → 1,000,000 predictions). The
throughput measurement trains nothing: it evaluates the untrained tiny base
(generation costs the same) on 100 items through the real worker path.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH_PORT, app_env, log, psql, summary_ms

DB = "tunixrt_bench_eval"
VAR = Path(tempfile.gettempdir()) / "tunixrt-bench-eval"
ENV = app_env(
    DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB}",
    TUNIXRT_VAR_DIR=str(VAR),
    RUNS_DIR=str(VAR / "runs"),
    JAX_CACHE_DIR=str(VAR / "jax-cache"),
)
RUNS = 10_000
ITEMS = 100


def django_setup() -> None:
    os.environ.update(ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tunixrt.settings")
    import django

    django.setup()


def setup() -> dict[str, Any]:
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    psql(f"CREATE DATABASE {DB}")
    django_setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from runs.models import EvalItem, EvalSet, Evaluation, Run
    from traces.datasets.building import build_dataset, validate_build_spec
    from traces.importing import import_trace_files

    call_command("migrate", verbosity=0)
    data = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tunix-rt"
    import_trace_files([str(data / "dev-reasoning-v2.jsonl")])
    dataset = build_dataset(validate_build_spec({"name": "bench-eval", "validation_fraction": 0.1}))
    eval_set = EvalSet.objects.create(name="bench", item_count=ITEMS)
    EvalItem.objects.bulk_create(
        [
            EvalItem(eval_set=eval_set, item_id=f"i{n}", position=n, prompt=f"What is {n} + {n}?",
                     expected_answer=str(2 * n), category=random.choice(["a", "b", "c"]))
            for n in range(ITEMS)
        ]
    )
    item_ids = list(EvalItem.objects.filter(eval_set=eval_set).values_list("pk", flat=True))
    started = time.perf_counter()
    now = timezone.now()
    rng = random.Random(1)
    base_models = ["tiny", "small"]
    with connection.cursor() as cur:
        raw = cur.cursor
        with raw.copy(
            "COPY runs_run (dataset_id, base_model, method, lora_rank, lora_alpha, learning_rate, max_steps,"
            " batch_size, max_seq_length, warmup_steps, weight_decay, seed, eval_every_steps,"
            " checkpoint_every_steps, chat_template, timeout_seconds, mode, status, celery_task_id, worker_host,"
            " attempt, created_at, error, stdout_tail, stderr_tail, summary, output_dir) FROM STDIN"
        ) as copy:
            for n in range(RUNS):
                copy.write_row((dataset.pk, base_models[n % 2], "full", 8, 16.0, 3e-3, 100, 8, 256, 5, 0.0, n, 20,
                                50, "gemma", 3600, "train", "completed", "", "", 1, now, "", "", "", "{}", ""))
    run_ids = list(Run.objects.order_by("id").values_list("id", flat=True))
    with connection.cursor() as cur:
        raw = cur.cursor
        with raw.copy(
            "COPY runs_evaluation (run_id, eval_set_id, baseline, status, max_new_tokens, judge_name,"
            " judge_version, total, done, correct, accuracy, scorecard, is_latest, error, celery_task_id,"
            " created_at, finished_at) FROM STDIN"
        ) as copy:
            for run_id in run_ids:
                correct = rng.randint(0, ITEMS)
                copy.write_row((run_id, eval_set.pk, False, "completed", 64, "exact_or_numeric", "1", ITEMS, ITEMS,
                                correct, correct / ITEMS, "{}", True, "", "", now, now))
    eval_ids = list(Evaluation.objects.order_by("id").values_list("id", flat=True))
    with connection.cursor() as cur:
        raw = cur.cursor
        with raw.copy(
            "COPY runs_prediction (evaluation_id, item_id, raw_output, extracted_answer, extraction, correct,"
            " match, latency_ms) FROM STDIN"
        ) as copy:
            for evaluation_id in eval_ids:
                for item_id in item_ids:
                    ok = rng.random() < 0.5
                    copy.write_row((evaluation_id, item_id, "Answer: 4", "4", "answer_marker", ok,
                                    "exact" if ok else "", 12.5))
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    return {"runs": RUNS, "evaluations": len(eval_ids), "predictions": len(eval_ids) * ITEMS,
            "seconds": round(time.perf_counter() - started, 1)}


def query(samples: int) -> dict[str, Any]:
    from bench import common

    common.app_env = lambda **extra: {**ENV, **extra}  # the web server on the eval bench database
    django_setup()
    from django.contrib.auth import get_user_model

    from tunixrt.models import ApiToken

    user, _ = get_user_model().objects.get_or_create(username="bench")
    token = ApiToken.objects.issue(user)
    results = {}
    with common.web_server(workers=1):
        conn = http.client.HTTPConnection("127.0.0.1", BENCH_PORT, timeout=30)
        headers = {"Authorization": f"Token {token}"}
        for label, path in (
            ("top 100", "/api/leaderboard?eval_set=bench&limit=100"),
            ("filtered by base model", "/api/leaderboard?eval_set=bench&base_model=small&limit=100"),
            ("page /leaderboard/ data (200 rows)", "/api/leaderboard?eval_set=bench&limit=200"),
        ):
            values = []
            for n in range(samples + 5):
                t0 = time.perf_counter()
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                if n >= 5:
                    values.append(time.perf_counter() - t0)
                assert response.status == 200, body[:200]
            results[label] = summary_ms(values)
    return results


def throughput() -> dict[str, Any]:
    django_setup()
    from runs.evaluation.evalsets import import_evalset
    from runs.evaluation.running import execute_evaluation, launch_evaluation
    from runs.models import EvalSet, Run
    from runs.validation import validate_launch

    data = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tunix-rt" / "eval_v2.jsonl"
    eval_set = EvalSet.objects.filter(name="eval-v2").first()
    if eval_set is None:
        with data.open("rb") as f:
            eval_set = import_evalset(f, "eval-v2")
    values = validate_launch({"dataset": "bench-eval@v1", "base_model": "tiny"})
    run = Run.objects.create(**values, status="completed")
    timings = []
    for _ in range(2):  # the first call also fills the compile cache
        evaluation = launch_evaluation(run, eval_set, baseline=True, max_new_tokens=32)
        started = time.perf_counter()
        execute_evaluation(evaluation.pk)
        timings.append(time.perf_counter() - started)
        evaluation.refresh_from_db()
        assert evaluation.status == "completed", evaluation.error
    return {
        "items": eval_set.item_count,
        "max_new_tokens": 32,
        "cold_seconds": round(timings[0], 2),
        "warm_seconds": round(timings[1], 2),
        "items_per_s_warm": round(eval_set.item_count / timings[1], 2),
        "items_per_s_cold": round(eval_set.item_count / timings[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["setup", "query", "throughput"])
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    if args.what == "setup":
        result: Any = setup()
    elif args.what == "query":
        result = query(args.samples)
    else:
        result = throughput()
    log(json.dumps(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
