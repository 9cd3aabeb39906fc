"""The run API: list (cursor, filters), detail, cancel, retry, logs, metrics, artifacts, delete."""

from __future__ import annotations

import shutil
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from runs.choices import LogStream, RunStatus
from runs.models import Run, RunLog, RunMetric
from runs.tests.checkpoint_support import write_checkpoint
from runs.tests.run_support import build_arithmetic_dataset, finished_run, make_run, output, write_outputs
from traces.models import Dataset

pytestmark = pytest.mark.django_db


def walk(api: Any, params: dict[str, Any], limit: int = 2) -> list[int]:
    """Every run id GET /api/runs returns for `params`, following next_cursor to the end."""
    seen: list[int] = []
    cursor = None
    for _ in range(100):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = api.get("/api/runs", query)
        assert response.status_code == 200, response.content
        body = response.json()
        seen += [row["id"] for row in body["results"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("pagination never ended")


@pytest.fixture
def history(dataset: Dataset) -> dict[str, Run]:
    """Runs of two datasets in every state, created an hour apart (oldest first)."""
    other = build_arithmetic_dataset(name="other", count=8, first=100)
    start = timezone.now() - timedelta(days=1)
    runs = {
        "done": finished_run(dataset, files=False),
        "failed": finished_run(dataset, RunStatus.FAILED, files=False, method="lora"),
        "dry": finished_run(other, files=False, mode="dry_run"),
        "running": make_run(dataset),
        "pending": make_run(other, method="lora"),
    }
    Run.objects.filter(pk=runs["running"].pk).update(status=RunStatus.RUNNING, heartbeat_at=timezone.now())
    for n, run in enumerate(runs.values()):
        Run.objects.filter(pk=run.pk).update(created_at=start + timedelta(hours=n))
        run.refresh_from_db()
    return runs


def test_the_list_is_newest_first_and_walks_by_cursor(api, history):
    expected = [r.pk for r in sorted(history.values(), key=lambda r: r.created_at, reverse=True)]
    assert walk(api, {}) == expected
    assert walk(api, {}, limit=100) == expected
    rows = api.get("/api/runs").json()["results"]
    assert set(rows[0]) == {
        "id",
        "name",
        "dataset",
        "base_model",
        "objective",
        "method",
        "parent",
        "device",
        "dtype",
        "mode",
        "status",
        "attempt",
        "max_steps",
        "created_at",
        "started_at",
        "finished_at",
    }  # narrow: no summary, logs or tails


def test_runs_created_in_the_same_instant_are_neither_repeated_nor_skipped(api, dataset):
    same = timezone.now()
    ids = [make_run(dataset).pk for _ in range(5)]
    Run.objects.update(created_at=same)
    assert walk(api, {}, limit=2) == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"status": "completed"}, ["dry", "done"]),
        ({"status": "running"}, ["running"]),
        ({"status": "failed"}, ["failed"]),
        ({"dataset": "other"}, ["pending", "dry"]),
        ({"dataset": "arith@v1"}, ["running", "failed", "done"]),
        ({"dataset": "arith@v2"}, []),
        ({"mode": "dry_run"}, ["dry"]),
        ({"method": "lora"}, ["pending", "failed"]),
        ({"method": "lora", "status": "pending"}, ["pending"]),
        ({"base_model": "tiny"}, ["pending", "running", "dry", "failed", "done"]),
    ],
)
def test_the_list_filters(api, history, params, names):
    assert walk(api, params) == [history[n].pk for n in names]


def test_the_list_filters_by_creation_time(api, history):
    middle = history["dry"].created_at
    after = walk(api, {"created_after": middle.isoformat()})
    before = walk(api, {"created_before": middle.isoformat()})
    assert after == [history["pending"].pk, history["running"].pk, history["dry"].pk]
    assert before == [history["failed"].pk, history["done"].pk]


@pytest.mark.parametrize(
    "params",
    [{"status": "exploded"}, {"mode": "x"}, {"created_after": "yesterday"}, {"cursor": "garbage"}, {"limit": 0}],
)
def test_bad_list_parameters_are_400_naming_them(api, history, params):
    response = api.get("/api/runs", params)
    assert response.status_code == 400
    assert set(response.json()) == set(params)


def test_the_list_costs_the_same_queries_for_any_number_of_runs(api, dataset, django_assert_num_queries):
    for _ in range(3):
        finished_run(dataset, files=False)
    with django_assert_num_queries(1):
        assert len(api.get("/api/runs").json()["results"]) == 3
    for _ in range(10):
        finished_run(dataset, files=False)
    with django_assert_num_queries(1):
        assert len(api.get("/api/runs").json()["results"]) == 13


def test_the_api_needs_a_login(client, history):
    assert client.get("/api/runs").status_code in (401, 403)
    assert client.post("/api/runs", {}, content_type="application/json").status_code in (401, 403)
    assert client.get(f"/api/runs/{history['done'].pk}/logs").status_code in (401, 403)


def test_detail_has_the_config_summary_and_outcome(api, history):
    run = history["done"]
    response = api.get(f"/api/runs/{run.pk}")
    assert response.status_code == 200
    data = response.json()
    assert data["id"] == run.pk
    assert data["status"] == "completed"
    assert data["dataset"] == "arith@v1"
    assert data["config"] == {**run.config(), "lora_alpha": float(run.lora_alpha)}
    assert data["summary"]["final_train_loss"] == 3.5
    assert data["duration_seconds"] == 30.0
    assert data["exit_code"] == 0
    assert data["output_dir"] == run.output_dir
    assert api.get("/api/runs/999999").status_code == 404


def test_logs_since_a_sequence_number_return_only_later_lines(api, dataset):
    run = make_run(dataset)
    RunLog.objects.bulk_create(
        [
            RunLog(run=run, seq=n, stream=LogStream.STDOUT if n % 2 else LogStream.STDERR, text=f"line {n}")
            for n in range(10)
        ]
    )
    url = f"/api/runs/{run.pk}/logs"
    everything = api.get(url).json()
    assert [line["seq"] for line in everything["lines"]] == list(range(10))
    assert everything["last_seq"] == 9
    assert everything["status"] == "pending"
    later = api.get(url, {"since_seq": 6}).json()
    assert [line["text"] for line in later["lines"]] == ["line 7", "line 8", "line 9"]
    assert later["lines"][0]["stream"] == "stdout"
    assert set(later["lines"][0]) == {"seq", "stream", "text", "created_at"}
    nothing = api.get(url, {"since_seq": 9}).json()
    assert nothing["lines"] == [] and nothing["last_seq"] == 9
    page = api.get(url, {"since_seq": 2, "limit": 3}).json()
    assert [line["seq"] for line in page["lines"]] == [3, 4, 5]
    assert page["last_seq"] == 5
    assert api.get(url, {"since_seq": "x"}).status_code == 400
    assert api.get(url, {"limit": 0}).status_code == 400
    assert api.get(url, {"limit": 1001}).status_code == 400


def test_logs_of_another_run_are_not_mixed_in(api, dataset):
    one, two = make_run(dataset), make_run(dataset)
    RunLog.objects.create(run=one, seq=0, text="mine")
    RunLog.objects.create(run=two, seq=0, text="theirs")
    assert [line["text"] for line in api.get(f"/api/runs/{one.pk}/logs").json()["lines"]] == ["mine"]


def test_metrics_are_downsampled_to_max_points_keeping_the_last(api, dataset):
    run = make_run(dataset)
    RunMetric.objects.bulk_create(
        [RunMetric(run=run, name="train_loss", step=s, value=10.0 / s) for s in range(1, 1002)]
        + [RunMetric(run=run, name="eval_loss", step=s, value=1.0) for s in (100, 200, 300)]
    )
    url = f"/api/runs/{run.pk}/metrics"
    full = api.get(url, {"name": "train_loss", "max_points": 5000}).json()
    assert full["run"] == run.pk
    assert list(full["series"]) == ["train_loss"]
    assert len(full["series"]["train_loss"]) == 1001
    assert full["series"]["train_loss"][0] == {"step": 1, "value": 10.0}

    for max_points in (2, 50, 100, 333):
        points = api.get(url, {"name": "train_loss", "max_points": max_points}).json()["series"]["train_loss"]
        steps = [p["step"] for p in points]
        assert len(points) <= max_points + 1
        assert len(points) >= max_points // 2
        assert steps == sorted(set(steps))
        assert steps[-1] == 1001  # the last point is always kept
        assert points[-1]["value"] == pytest.approx(10.0 / 1001)

    every = api.get(url).json()["series"]
    assert sorted(every) == ["eval_loss", "train_loss"]
    assert len(every["train_loss"]) <= 501
    assert [p["step"] for p in every["eval_loss"]] == [100, 200, 300]
    assert api.get(url, {"name": "nothing"}).json()["series"] == {"nothing": []}
    assert api.get(url, {"max_points": 1}).status_code == 400
    assert api.get(url, {"max_points": "many"}).status_code == 400


def test_metric_series_thins_in_the_database(dataset):
    run = make_run(dataset)
    RunMetric.objects.bulk_create([RunMetric(run=run, name="m", step=s, value=float(s)) for s in range(0, 95)])
    assert run.metric_series("m", 10) == [(s, float(s)) for s in range(0, 95, 10)] + [(94, 94.0)]
    assert run.metric_series("m", 1000) == [(s, float(s)) for s in range(95)]
    assert run.metric_series("absent") == []


def test_artifacts_lists_the_run_files_final_model_first(api, dataset):
    run = finished_run(dataset, files=False)
    files = write_outputs(run)
    response = api.get(f"/api/runs/{run.pk}/artifacts")
    assert response.status_code == 200
    listed = response.json()["files"]
    assert {f["path"]: f["size"] for f in listed} == {path: len(data) for path, data in files.items()}
    assert [f["path"] for f in listed[:2]] == ["final/config.json", "final/model.safetensors"]


def test_artifacts_of_a_run_without_files_is_empty(api, dataset):
    run = make_run(dataset)
    assert api.get(f"/api/runs/{run.pk}/artifacts").json() == {"run": run.pk, "files": []}


@pytest.mark.parametrize("status", [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.CANCEL_REQUESTED])
def test_an_active_run_cannot_be_deleted(api, dataset, status, user):
    run = make_run(dataset, created_by=user)
    write_outputs(run)
    Run.objects.filter(pk=run.pk).update(status=status)
    response = api.delete(f"/api/runs/{run.pk}")
    assert response.status_code == 409
    assert "cancel it first" in response.json()["detail"]
    assert Run.objects.filter(pk=run.pk).exists()
    assert (output(run) / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.CANCELLED])
def test_a_finished_run_is_deleted_with_its_files(api, dataset, status, user):
    run = finished_run(dataset, status, created_by=user)
    keep = finished_run(dataset, created_by=user)
    assert output(run).is_dir()
    response = api.delete(f"/api/runs/{run.pk}")
    assert response.status_code == 204
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not output(run).exists()
    assert not RunLog.objects.filter(run_id=run.pk).exists()
    assert not RunMetric.objects.filter(run_id=run.pk).exists()
    assert output(keep).is_dir()  # only its own folder
    assert api.delete(f"/api/runs/{run.pk}").status_code == 404


def test_deleting_a_run_never_removes_a_folder_outside_runs_dir(api, dataset, tmp_path, user):
    run = finished_run(dataset, files=False, created_by=user)
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    Run.objects.filter(pk=run.pk).update(output_dir=str(outside))
    assert api.delete(f"/api/runs/{run.pk}").status_code == 204
    assert (outside / "keep.txt").read_text() == "keep"


def test_retry_creates_a_new_run_with_the_same_config(
    api, dataset, sent_tasks, django_capture_on_commit_callbacks, user
):
    old = finished_run(
        dataset, RunStatus.FAILED, learning_rate=0.005, max_steps=17, method="lora", lora_rank=4, created_by=user
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/runs/{old.pk}/retry")
    assert response.status_code == 201, response.content
    data = response.json()
    new = Run.objects.get(pk=data["id"])
    assert new.pk != old.pk
    assert new.retry_of_id == old.pk
    assert new.status == RunStatus.PENDING
    assert new.config() == old.config()
    assert new.dataset_id == old.dataset_id
    assert new.attempt == 1
    assert new.output_dir != old.output_dir
    assert sent_tasks == [(new.pk,)]
    old.refresh_from_db()
    assert old.status == RunStatus.FAILED  # untouched


def test_retry_is_refused_when_the_base_model_is_gone(api, dataset, settings, user):
    folder = settings.MODELS_DIR / "mine"
    write_checkpoint(folder, "qwen3", tokenizer="byte")
    old = finished_run(dataset, base_model="local:mine", created_by=user)
    shutil.rmtree(folder)
    response = api.post(f"/api/runs/{old.pk}/retry")
    assert response.status_code == 400
    assert list(response.json()) == ["base_model"]
    assert Run.objects.count() == 1


def test_cancel_of_a_pending_run_cancels_it_at_once(api, dataset, user):
    run = make_run(dataset, created_by=user)
    response = api.post(f"/api/runs/{run.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == RunStatus.CANCELLED
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.finished_at is not None


def test_cancel_of_a_running_run_asks_its_worker(api, dataset, user):
    run = make_run(dataset, created_by=user)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    response = api.post(f"/api/runs/{run.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == RunStatus.CANCEL_REQUESTED
    # Asking again is harmless.
    assert api.post(f"/api/runs/{run.pk}/cancel").json()["status"] == RunStatus.CANCEL_REQUESTED


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.CANCELLED])
def test_cancel_of_a_finished_run_is_409(api, dataset, status, user):
    run = finished_run(dataset, status, files=False, created_by=user)
    response = api.post(f"/api/runs/{run.pk}/cancel")
    assert response.status_code == 409
    assert "already" in response.json()["detail"]
    run.refresh_from_db()
    assert run.status == status


def test_a_dataset_used_by_a_run_cannot_be_deleted(maintainer_api, dataset):
    api = maintainer_api  # the dataset belongs to nobody
    run = finished_run(dataset, files=False)
    response = api.delete(f"/api/datasets/{dataset.key}")
    assert response.status_code == 409
    assert response.json()["runs"] == [run.pk]
    assert Dataset.objects.filter(pk=dataset.pk).exists()
    assert api.delete(f"/api/runs/{run.pk}").status_code == 204
    assert api.delete(f"/api/datasets/{dataset.key}").status_code == 204
