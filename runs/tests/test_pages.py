"""Run pages: history with self-updating rows, launch form, detail with live fragments, compare."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.utils import timezone

from runs.choices import RunStatus
from runs.models import Run, RunLog
from runs.tests.checkpoint_support import write_checkpoint
from runs.tests.run_support import finished_run, make_run, output

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
ACTIVE = [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.CANCEL_REQUESTED]
TERMINAL = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.CANCELLED]


def html(response: Any) -> str:
    text: str = response.content.decode()
    return text


def active_run(dataset: Any, status: str = RunStatus.RUNNING, **overrides: Any) -> Run:
    run = make_run(dataset, **overrides)
    if status != RunStatus.PENDING:
        Run.objects.filter(pk=run.pk).update(status=status, started_at=timezone.now(), heartbeat_at=timezone.now())
    run.refresh_from_db()
    return run


def row_of(page_html: str, run: Run) -> str:
    match = re.search(rf'<tr id="run-{run.pk}".*?</tr>', page_html, re.S)
    assert match, f"no row for run {run.pk}"
    return match.group(0)


def test_pages_need_a_login(client, dataset):
    run = finished_run(dataset, files=False)
    for url in ("/runs/", "/runs/new/", f"/runs/{run.pk}/", "/runs/compare/", f"/runs/{run.pk}/logs/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/")


def test_history_lists_runs_and_only_active_rows_poll(page, dataset):
    done = finished_run(dataset, files=False)
    running = active_run(dataset)
    pending = active_run(dataset, RunStatus.PENDING, mode="dry_run")
    response = page.get("/runs/")
    assert response.status_code == 200
    text = html(response)
    for run in (done, running, pending):
        assert f'href="/runs/{run.pk}/"' in text
    assert 'hx-trigger="every 2s"' not in row_of(text, done)
    assert f'hx-get="/runs/{running.pk}/row/"' in row_of(text, running)
    assert 'hx-trigger="every 2s"' in row_of(text, pending)
    assert "dry run" in row_of(text, pending)
    assert ">3.5<" in row_of(text, done)  # final train loss, as people read it
    assert "20 / 20" in row_of(text, done)
    assert '<span class="badge completed">Completed</span>' in row_of(text, done)
    assert text.index(f"run-{pending.pk}") < text.index(f"run-{done.pk}")  # newest first


@pytest.mark.parametrize("status", ACTIVE)
def test_an_active_row_keeps_polling(page, dataset, status):
    run = active_run(dataset, status)
    response = page.get(f"/runs/{run.pk}/row/", **HTMX)
    assert response.status_code == 200
    assert 'hx-trigger="every 2s"' in html(response)
    assert "<html" not in html(response)


@pytest.mark.parametrize("status", TERMINAL)
def test_a_finished_row_answers_286_to_stop_polling(page, dataset, status):
    run = finished_run(dataset, status, files=False)
    response = page.get(f"/runs/{run.pk}/row/", **HTMX)
    assert response.status_code == 286
    text = html(response)
    assert f'id="run-{run.pk}"' in text
    assert "hx-trigger" not in text
    assert f'class="badge {status}"' in text


def test_history_filters_and_htmx_fragment(page, dataset):
    done = finished_run(dataset, files=False)
    lora = active_run(dataset, method="lora")
    response = page.get("/runs/", {"method": "lora"}, **HTMX)
    assert response.status_code == 200
    text = html(response)
    assert text.lstrip().startswith('<div id="run-table">')
    assert f"run-{lora.pk}" in text and f"run-{done.pk}" not in text
    assert f"run-{done.pk}" in html(page.get("/runs/", {"status": "completed"}))
    assert f"run-{lora.pk}" not in html(page.get("/runs/", {"status": "completed"}))
    assert "No runs yet" in html(page.get("/runs/", {"dataset": "nothing"}))


def test_history_loads_more_by_cursor(page, dataset):
    runs = [make_run(dataset) for _ in range(55)]
    first = html(page.get("/runs/"))
    assert first.count('<tr id="run-') == 50
    cursor = re.search(r"cursor=([\w-]+)", first)
    assert cursor
    more = html(page.get("/runs/", {"cursor": cursor.group(1)}, **HTMX))
    assert more.count('<tr id="run-') == 5
    assert f"run-{runs[0].pk}" in more
    assert "cursor: Invalid cursor." in html(page.get("/runs/", {"cursor": "garbage"}))


def test_the_launch_form_offers_ready_datasets_and_base_models(page, dataset, settings):
    folder = settings.MODELS_DIR / "mine"
    write_checkpoint(folder, "qwen3", tokenizer="byte")
    response = page.get("/runs/new/", {"dataset": dataset.key})
    assert response.status_code == 200
    text = html(response)
    assert f'<option value="{dataset.key}" selected>' in text
    assert "24 train / 8 val" in text
    for value in ("tiny", "small", "local:mine"):
        assert f'<option value="{value}"' in text
    for field in ("learning_rate", "max_steps", "batch_size", "lora_rank", "timeout_seconds", "dry_run"):
        assert f'name="{field}"' in text
    assert "(0.0000001–1)" in text  # the range is shown


def test_the_launch_form_without_datasets_says_to_build_one(page, db):
    assert "No ready dataset yet" in html(page.get("/runs/new/"))


def test_a_valid_launch_redirects_to_the_detail_page(page, dataset, sent_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = page.post(
            "/runs/new/",
            {
                "dataset": dataset.key,
                "base_model": "tiny",
                "method": "full",
                "chat_template": "gemma",
                "max_steps": "20",
                "learning_rate": "0.01",
            },
        )
    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.pk}/"
    assert run.learning_rate == 0.01
    assert sent_tasks == [(run.pk,)]
    detail = page.get(response["Location"])
    assert f"Run {run.pk} queued." in html(detail)


def test_an_invalid_launch_shows_the_errors_by_their_fields(page, dataset):
    response = page.post(
        "/runs/new/",
        {
            "dataset": dataset.key,
            "base_model": "tiny",
            "method": "full",
            "chat_template": "gemma",
            "max_steps": "0",
            "learning_rate": "fast",
        },
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"max_steps", "learning_rate"}
    text = html(response)
    assert "Ensure this value is between 1 and 1,000,000." in text
    assert 'value="fast"' in text  # what was typed is kept
    assert Run.objects.count() == 0


def test_the_detail_page_shows_status_config_summary_log_chart_and_artifacts(page, dataset, user):
    run = finished_run(dataset, learning_rate=0.004, created_by=user)
    response = page.get(f"/runs/{run.pk}/")
    assert response.status_code == 200
    text = html(response)
    assert f"Run #{run.pk}" in text
    assert '<span class="badge completed" id="run-status">Completed</span>' in text
    assert 'id="status"' in text and 'hx-trigger="every 2s"' not in text  # finished: no polling
    assert "<th>Learning rate</th><td>0.004</td>" in text
    assert "<th>Final train loss</th><td>3.5</td>" in text
    assert "<th>Parameters</th><td>328,832</td>" in text
    assert "<th>Tokens/s</th><td>5,000</td>" in text
    for n in range(5):
        assert f'<span class="seq">{n}</span> line {n}' in text
    assert text.count('<svg class="chart"') == 2  # a loss panel and a learning rate panel
    assert text.count("<polyline") == 3  # train and eval loss, learning rate
    assert "train loss" in text and "eval loss" in text and "learning rate" in text
    assert f'href="/runs/{run.pk}/artifacts/final/model.safetensors"' in text
    assert f'href="/runs/{run.pk}/artifacts/checkpoints/10/model/data.bin"' in text
    assert f'action="/runs/{run.pk}/retry/"' in text
    assert f'href="/runs/{run.pk}/delete/"' in text
    assert 'id="cancel-button"' not in text


def test_a_failed_run_shows_its_error(page, dataset):
    run = finished_run(dataset, RunStatus.FAILED, files=False)
    text = html(page.get(f"/runs/{run.pk}/"))
    assert "log-poll" not in text, "an ended run's log is complete: nothing to poll"
    assert 'id="run-error">ended failed</div>' in text
    assert "No files." in text


def test_a_running_run_page_polls_and_can_be_cancelled(page, dataset, user):
    run = active_run(dataset, created_by=user)
    text = html(page.get(f"/runs/{run.pk}/"))
    assert f'hx-get="/runs/{run.pk}/?fragment=status" hx-trigger="every 2s"' in text
    assert f'hx-get="/runs/{run.pk}/?fragment=chart" hx-trigger="every 2s"' in text
    assert f'hx-get="/runs/{run.pk}/logs/?since_seq=-1" hx-trigger="every 1s"' in text
    assert 'id="cancel-button"' in text
    assert "No metric points yet." in text
    assert "Listed when the run ends." in text


def test_status_and_chart_fragments_poll_while_active_then_stop_and_refresh(page, dataset):
    run = active_run(dataset)
    status = page.get(f"/runs/{run.pk}/", {"fragment": "status"}, **HTMX)
    assert status.status_code == 200
    assert html(status).lstrip().startswith('<section id="status"')
    assert "HX-Refresh" not in status
    chart = page.get(f"/runs/{run.pk}/", {"fragment": "chart"}, **HTMX)
    assert chart.status_code == 200
    assert html(chart).lstrip().startswith('<div id="chart"')

    Run.objects.filter(pk=run.pk).update(status=RunStatus.COMPLETED, finished_at=timezone.now())
    status = page.get(f"/runs/{run.pk}/", {"fragment": "status"}, **HTMX)
    assert status.status_code == 286
    assert status["HX-Refresh"] == "true"  # the whole page reloads to show summary and files
    assert "Completed" in html(status)
    assert page.get(f"/runs/{run.pk}/", {"fragment": "chart"}, **HTMX).status_code == 286


def test_the_log_fragment_sends_only_later_lines(page, dataset):
    run = active_run(dataset)
    RunLog.objects.bulk_create([RunLog(run=run, seq=n, text=f"line {n}") for n in range(8)])
    response = page.get(f"/runs/{run.pk}/logs/", {"since_seq": 4}, **HTMX)
    assert response.status_code == 200
    text = html(response)
    assert re.findall(r'<span class="seq">(\d+)</span>', text) == ["5", "6", "7"]
    assert f'hx-get="/runs/{run.pk}/logs/?since_seq=7" hx-trigger="every 1s"' in text
    nothing = html(page.get(f"/runs/{run.pk}/logs/", {"since_seq": 7}, **HTMX))
    assert '<span class="seq">' not in nothing
    assert "since_seq=7" in nothing

    Run.objects.filter(pk=run.pk).update(status=RunStatus.COMPLETED)
    # The last lines still arrive after the run ends, with one more fetch queued ...
    last = page.get(f"/runs/{run.pk}/logs/", {"since_seq": 5}, **HTMX)
    assert last.status_code == 200
    assert f'hx-get="/runs/{run.pk}/logs/?since_seq=7" hx-trigger="load"' in html(last)
    # ... which finds nothing and leaves no poller behind (it would fire again on load).
    done = page.get(f"/runs/{run.pk}/logs/", {"since_seq": 7}, **HTMX)
    assert done.status_code == 286
    assert "log-poll" not in html(done)
    assert page.get(f"/runs/{run.pk}/logs/", {"since_seq": "x"}, **HTMX).status_code == 200


def test_compare_two_runs_shows_a_config_diff_and_overlaid_curves(page, dataset):
    one = finished_run(dataset, files=False, learning_rate=0.01)
    two = finished_run(dataset, files=False, learning_rate=0.002)
    response = page.get("/runs/compare/", {"id": [one.pk, two.pk]})
    assert response.status_code == 200
    text = html(response)
    rows = {name: classes.split() for classes, name in re.findall(r'<tr class="([^"]*)"><th>([^<]+)</th>', text)}
    assert "differs" in rows["Learning rate"]
    assert "differs" not in rows["Max steps"]
    assert "differs" not in rows["Dataset"]
    assert "result" in rows["Final train loss"]
    assert '<svg class="chart"' in text
    assert text.count("<polyline") == 6  # train and eval loss, learning rate, of each run
    assert f"#{one.pk} train loss" in text and f"#{two.pk} train loss" in text
    assert f'href="/runs/{one.pk}/"' in text and f'href="/runs/{two.pk}/"' in text


@pytest.mark.parametrize("count", [1, 5])
def test_compare_needs_two_to_four_runs(page, dataset, count):
    ids = [finished_run(dataset, files=False).pk for _ in range(count)]
    response = page.get("/runs/compare/", {"id": ids})
    assert response.status_code == 200
    text = html(response)
    assert "Pick 2 to 4 different runs." in text
    assert '<svg class="chart"' not in text


def test_compare_counts_a_repeated_run_once_and_names_unknown_ones(page, dataset):
    run = finished_run(dataset, files=False)
    assert "Pick 2 to 4 different runs." in html(page.get("/runs/compare/", {"id": [run.pk, run.pk]}))
    assert "No run 99999." in html(page.get("/runs/compare/", {"id": [run.pk, 99999]}))


def test_compare_without_a_choice_offers_recent_runs(page, dataset):
    run = finished_run(dataset, files=False)
    text = html(page.get("/runs/compare/"))
    assert f'<option value="{run.pk}"' in text
    assert "Pick 2 to 4" not in text


def test_the_cancel_button_cancels_a_pending_run(page, dataset, user):
    run = active_run(dataset, RunStatus.PENDING, created_by=user)
    response = page.post(f"/runs/{run.pk}/cancel/")
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert f"Run {run.pk}: cancelled." in html(page.get(response["Location"]))


def test_the_cancel_button_on_a_finished_run_says_so(page, dataset, user):
    run = finished_run(dataset, files=False, created_by=user)
    response = page.post(f"/runs/{run.pk}/cancel/", follow=True)
    assert "is already completed" in html(response)
    assert page.get(f"/runs/{run.pk}/cancel/").status_code == 405


def test_the_retry_button_launches_the_same_config(page, dataset, sent_tasks, django_capture_on_commit_callbacks, user):
    run = finished_run(dataset, RunStatus.FAILED, files=False, seed=5, created_by=user)
    with django_capture_on_commit_callbacks(execute=True):
        response = page.post(f"/runs/{run.pk}/retry/")
    new = Run.objects.exclude(pk=run.pk).get()
    assert response["Location"] == f"/runs/{new.pk}/"
    assert new.config() == run.config()
    assert new.retry_of_id == run.pk
    assert sent_tasks == [(new.pk,)]


def test_delete_asks_first_then_removes_the_run_and_its_files(page, dataset, user):
    run = finished_run(dataset, created_by=user)
    assert "Delete run #" in html(page.get(f"/runs/{run.pk}/delete/"))
    response = page.post(f"/runs/{run.pk}/delete/")
    assert response["Location"] == "/runs/"
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not output(run).exists()


def test_delete_of_an_active_run_is_refused(page, dataset, user):
    run = active_run(dataset, created_by=user)
    response = page.post(f"/runs/{run.pk}/delete/", follow=True)
    assert "cancel it first" in html(response)
    assert Run.objects.filter(pk=run.pk).exists()


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.6686810851097107, "0.6687"),
        (18633.5, "18,633.5"),
        (5000.0, "5,000"),
        (0.087, "0.087"),
        (2.5e-05, "2.50e-05"),
        (-0.00001, "-1.00e-05"),
        (0.0, "0"),
        (-0.00001 * 0, "0"),
        (328832, "328,832"),
        (20, "20"),
        (True, True),
        ("tiny", "tiny"),
        ([150, 200], [150, 200]),
        (None, None),
        (float("nan"), "nan"),
    ],
)
def test_summary_numbers_are_shown_rounded(value, shown):
    from runs.templatetags.runs_format import number

    assert str(number(value)) == str(shown)


@pytest.mark.django_db
def test_the_run_summary_is_grouped_and_labelled_for_people(page, dataset):
    run = finished_run(dataset)
    run.summary = {**run.summary, "steps_done": 20, "train_examples": 90, "peak_rss_mb": 812.5, "odd_key": 1}
    run.save(update_fields=["summary"])
    text = html(page.get(f"/runs/{run.pk}/"))
    summary = text[text.index("<h2>Summary</h2>") : text.index("</section>", text.index("<h2>Summary</h2>"))]
    groups = re.findall(r'<h3 class="kv-group">(\w+)</h3>', summary)
    assert groups[:2] == ["Result", "Data"] and groups[-1] == "Other"
    assert "<th>Steps done</th><td>20</td>" in summary and "<th>Peak RSS (MB)</th><td>812.5</td>" in summary
    assert "_" not in "".join(re.findall(r"<th>([^<]+)</th>", summary))
