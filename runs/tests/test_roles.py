"""Roles for runs, evaluations, eval sets, the registry and regression gates: API, pages, commands, buttons."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from runs.choices import RunStatus
from runs.models import EvalSet, Evaluation, ModelVersion, RegressionBaseline, Run
from runs.tests.eval_support import (
    completed_run,
    hand_evaluation,
    item,
    make_eval_set,
    record_evaluation_tasks,
    use_eval_folders,
)
from runs.tests.run_support import FAST, finished_run, make_run
from tunixrt.tests.role_support import (
    ROLES,
    CsrfClient,
    actor,
    change_allowed,
    html,
    owner_of,
    token_client,
)

pytestmark = pytest.mark.django_db

WHOSE = ("own", "other", "nobody")


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    use_eval_folders(settings, tmp_path)


@pytest.fixture
def sent_evaluations(monkeypatch):
    return record_evaluation_tasks(monkeypatch)


def _pending_run(dataset, owner):
    return make_run(dataset, created_by=owner)


def _failed_run(dataset, owner):
    return finished_run(dataset, RunStatus.FAILED, files=False, created_by=owner)


def _pending_evaluation(dataset, owner):
    return Evaluation.objects.create(
        run=completed_run(dataset), eval_set=make_eval_set("quiz"), total=4, created_by=owner
    )


# Each change: how to make the object for an owner, the API call and the page form that change it,
# their answers when allowed, and whether the change happened.
CHANGES = {
    "cancel run": (
        _pending_run,
        lambda api, run: api.post(f"/api/runs/{run.pk}/cancel"),
        lambda page, run: page.submit(f"/runs/{run.pk}/cancel/"),
        (200, 302),
        lambda run: Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED,
    ),
    "retry run": (
        _failed_run,
        lambda api, run: api.post(f"/api/runs/{run.pk}/retry"),
        lambda page, run: page.submit(f"/runs/{run.pk}/retry/"),
        (201, 302),
        lambda run: Run.objects.filter(retry_of=run).exists(),
    ),
    "delete run": (
        _failed_run,
        lambda api, run: api.delete(f"/api/runs/{run.pk}"),
        lambda page, run: page.submit(f"/runs/{run.pk}/delete/"),
        (204, 302),
        lambda run: not Run.objects.filter(pk=run.pk).exists(),
    ),
    "cancel evaluation": (
        _pending_evaluation,
        lambda api, ev: api.post(f"/api/evaluations/{ev.pk}/cancel"),
        lambda page, ev: page.submit(f"/evaluations/{ev.pk}/cancel/"),
        (200, 302),
        lambda ev: Evaluation.objects.get(pk=ev.pk).status == RunStatus.CANCELLED,
    ),
}


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("whose", WHOSE)
@pytest.mark.parametrize("role", ROLES)
def test_cancel_retry_and_delete_through_the_api(request, dataset, sent_tasks, role, whose, change):
    make, call, _, (allowed, _), happened = CHANGES[change]
    user = actor(request, role)
    obj = make(dataset, owner_of(request, user, whose))
    response = call(token_client(user), obj)
    if change_allowed(role, whose):
        assert response.status_code == allowed, response.content
        assert happened(obj)
    else:
        assert response.status_code == 403
        assert "maintainer" in response.json()["detail"]
        assert not happened(obj)


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("whose", WHOSE)
@pytest.mark.parametrize("role", ROLES)
def test_cancel_retry_and_delete_through_the_pages(request, dataset, sent_tasks, role, whose, change):
    make, _, submit, (_, allowed), happened = CHANGES[change]
    user = actor(request, role)
    obj = make(dataset, owner_of(request, user, whose))
    response = submit(CsrfClient(user), obj)
    if change_allowed(role, whose):
        assert response.status_code == allowed
        assert happened(obj)
    else:
        assert response.status_code == 403
        assert "maintainer" in html(response)
        assert not happened(obj)


@pytest.mark.parametrize("whose", WHOSE)
@pytest.mark.parametrize("role", ROLES)
def test_deleting_an_eval_set(request, role, whose):
    user = actor(request, role)
    make_eval_set("gone", created_by=owner_of(request, user, whose))
    response = token_client(user).delete("/api/eval-sets/gone")
    assert response.status_code == (204 if change_allowed(role, whose) else 403)
    assert EvalSet.objects.filter(name="gone").exists() is not change_allowed(role, whose)


@pytest.mark.parametrize("role", ROLES)
def test_launching_needs_a_member_and_the_run_is_theirs(request, dataset, sent_tasks, role):
    user = actor(request, role)
    api = token_client(user).post("/api/runs", {"dataset": dataset.key, **FAST}, format="json")
    browser = CsrfClient(user)
    form = browser.get("/runs/new/")
    form_fields = {"base_model": "tiny", "method": "full", "chat_template": "gemma", "max_steps": "20"}
    page = browser.submit("/runs/new/", {"dataset": dataset.key, **form_fields})
    if role == "viewer":
        assert (api.status_code, form.status_code, page.status_code) == (403, 403, 403)
        assert not Run.objects.exists()
    else:
        assert (api.status_code, form.status_code, page.status_code) == (201, 200, 302)
        assert list(Run.objects.values_list("created_by", flat=True)) == [user.pk, user.pk]


@pytest.mark.parametrize("role", ROLES)
def test_evaluating_anyones_run_needs_a_member(request, dataset, other_member, sent_evaluations, role):
    user = actor(request, role)
    run = completed_run(dataset, created_by=other_member)
    make_eval_set("quiz")
    api = token_client(user).post(f"/api/runs/{run.pk}/evaluate", {"eval_set": "quiz"}, format="json")
    page = CsrfClient(user).submit(f"/runs/{run.pk}/evaluate/", {"eval_set": "quiz"})
    if role == "viewer":
        assert (api.status_code, page.status_code) == (403, 403)
        assert not Evaluation.objects.exists()
    else:
        assert (api.status_code, page.status_code) == (201, 302)
        assert set(Evaluation.objects.values_list("created_by", flat=True)) == {user.pk}


@pytest.mark.parametrize("role", ROLES)
def test_creating_an_eval_set_needs_a_member(request, dataset, role):
    user = actor(request, role)
    items = [item(1), item(2)]
    api = token_client(user).post("/api/eval-sets", {"name": "api-set", "items": items}, format="json")
    page = CsrfClient(user).submit("/evaluations/", {"name": "page-set", "dataset": dataset.key})
    if role == "viewer":
        assert (api.status_code, page.status_code) == (403, 403)
        assert not EvalSet.objects.exists()
    else:
        assert (api.status_code, page.status_code) == (201, 302)
        assert set(EvalSet.objects.values_list("created_by", flat=True)) == {user.pk}


@pytest.mark.parametrize(("role", "allowed"), [("viewer", False), ("member", False), ("maintainer", True)])
def test_promoting_even_ones_own_run_needs_a_maintainer(request, dataset, role, allowed):
    user = actor(request, role)
    run = completed_run(dataset, created_by=user)
    api = token_client(user).post("/api/models", {"run": run.pk, "name": "api-model"}, format="json")
    page = CsrfClient(user).submit(f"/runs/{run.pk}/promote/", {"name": "page-model"})
    if allowed:
        assert (api.status_code, page.status_code) == (201, 302)
        assert ModelVersion.objects.count() == 2
    else:
        assert (api.status_code, page.status_code) == (403, 403)
        assert api.json()["detail"] == (
            f"Promoting a run to the model registry needs the maintainer role; you are a {role}."
        )
        assert not ModelVersion.objects.exists()


@pytest.mark.parametrize(("role", "allowed"), [("viewer", False), ("member", False), ("maintainer", True)])
def test_creating_and_deleting_baselines_needs_a_maintainer(request, dataset, role, allowed):
    user = actor(request, role)
    quiz = make_eval_set("quiz")
    reference = completed_run(dataset, created_by=user)
    hand_evaluation(reference, quiz, {"q1": True, "q2": False})
    existing = RegressionBaseline.objects.create(name="kept", run=reference, eval_set=quiz, value=0.5)
    api = token_client(user)
    browser = CsrfClient(user)
    body = {"name": "api-gate", "run": reference.pk, "eval_set": "quiz"}
    created = api.post("/api/regression/baselines", body, format="json")
    paged = browser.submit("/regression/", {**body, "name": "page-gate"})
    # Checking a run against a gate is a read: everyone may.
    assert api.get("/api/regression/baselines/kept/check", {"run": reference.pk}).status_code == 200
    deleted = api.delete("/api/regression/baselines/kept")
    if allowed:
        assert (created.status_code, paged.status_code, deleted.status_code) == (201, 302, 204)
        assert set(RegressionBaseline.objects.values_list("name", flat=True)) == {"api-gate", "page-gate"}
        browser.submit("/regression/", {"action": "delete", "name": "page-gate"})
        assert set(RegressionBaseline.objects.values_list("name", flat=True)) == {"api-gate"}
    else:
        assert (created.status_code, paged.status_code, deleted.status_code) == (403, 403, 403)
        assert "needs the maintainer role" in created.json()["detail"]
        assert browser.submit("/regression/", {"action": "delete", "name": "kept"}).status_code == 403
        assert list(RegressionBaseline.objects.all()) == [existing]


def test_a_viewer_reads_runs_evaluations_leaderboard_and_downloads(viewer, maintainer, dataset):
    run = completed_run(dataset)
    quiz = make_eval_set("quiz")
    evaluation = hand_evaluation(run, quiz, {"q1": True})
    CsrfClient(maintainer).submit(f"/runs/{run.pk}/promote/", {"name": "shared"})
    api = token_client(viewer)
    for url in (
        "/api/runs",
        f"/api/runs/{run.pk}",
        f"/api/runs/{run.pk}/logs",
        f"/api/evaluations/{evaluation.pk}/predictions",
        "/api/leaderboard?eval_set=quiz",
        "/api/models/shared/versions/1/download",
    ):
        assert api.get(url).status_code == 200, url
    browser = CsrfClient(viewer)
    for url in (
        "/runs/",
        f"/runs/{run.pk}/",
        f"/evaluations/{evaluation.pk}/",
        "/evaluations/",
        "/leaderboard/",
        "/regression/",
        "/models/",
        "/models/shared/v1/download/",
        f"/runs/{run.pk}/artifacts/final/model.safetensors",
    ):
        assert browser.get(url).status_code == 200, url


def _controls(text: str, run: Run) -> set[str]:
    shown = {
        "cancel": 'id="cancel-button"' in text,
        "retry": 'id="retry-button"' in text,
        "delete": f'href="/runs/{run.pk}/delete/"' in text,
        "evaluate": f'action="/runs/{run.pk}/evaluate/"' in text,
        "promote": f'action="/runs/{run.pk}/promote/"' in text,
    }
    return {name for name, present in shown.items() if present}


@pytest.mark.parametrize(
    ("role", "whose", "controls"),
    [
        ("viewer", "own", set()),
        ("viewer", "other", set()),
        ("member", "own", {"retry", "delete", "evaluate"}),
        ("member", "other", {"evaluate"}),
        ("member", "nobody", {"evaluate"}),
        ("maintainer", "other", {"retry", "delete", "evaluate", "promote"}),
        ("maintainer", "nobody", {"retry", "delete", "evaluate", "promote"}),
    ],
)
def test_the_run_page_shows_only_the_buttons_the_user_may_use(request, dataset, role, whose, controls):
    user = actor(request, role)
    run = completed_run(dataset, created_by=owner_of(request, user, whose))
    make_eval_set("quiz")
    assert _controls(html(CsrfClient(user).get(f"/runs/{run.pk}/")), run) == controls


@pytest.mark.parametrize(("role", "whose", "shown"), [("member", "own", True), ("member", "other", False),
                                                      ("viewer", "own", False), ("maintainer", "other", True)])
def test_cancel_buttons_of_active_runs_and_evaluations_are_for_who_may_cancel(request, dataset, role, whose, shown):
    user = actor(request, role)
    owner = owner_of(request, user, whose)
    run = make_run(dataset, created_by=owner)
    evaluation = _pending_evaluation(dataset, owner)
    browser = CsrfClient(user)
    assert ('id="cancel-button"' in html(browser.get(f"/runs/{run.pk}/"))) is shown
    evaluation_page = html(browser.get(f"/evaluations/{evaluation.pk}/"))
    assert (f'action="/evaluations/{evaluation.pk}/cancel/"' in evaluation_page) is shown


def test_the_viewer_sees_no_launch_import_or_baseline_controls(viewer, dataset):
    completed_run(dataset)
    make_eval_set("quiz")
    RegressionBaseline.objects.create(
        name="gate", run=Run.objects.get(), eval_set=EvalSet.objects.get(), value=0.5
    )
    browser = CsrfClient(viewer)
    runs = html(browser.get("/runs/"))
    assert 'href="/runs/new/"' not in runs
    assert 'id="evalset-upload"' not in html(browser.get("/evaluations/"))
    gates = html(browser.get("/regression/"))
    assert "Create baseline" not in gates and 'value="delete"' not in gates
    assert "Check</button>" in gates


def test_a_member_sees_launch_and_import_but_no_baseline_controls(user, dataset):
    completed_run(dataset)
    make_eval_set("quiz")
    RegressionBaseline.objects.create(name="gate", run=Run.objects.get(), eval_set=EvalSet.objects.get(), value=0.5)
    browser = CsrfClient(user)
    assert 'href="/runs/new/"' in html(browser.get("/runs/"))
    assert 'id="evalset-upload"' in html(browser.get("/evaluations/"))
    gates = html(browser.get("/regression/"))
    assert "Create baseline" not in gates and 'value="delete"' not in gates


def test_a_maintainer_sees_the_baseline_controls(maintainer, dataset):
    completed_run(dataset)
    make_eval_set("quiz")
    RegressionBaseline.objects.create(name="gate", run=Run.objects.get(), eval_set=EvalSet.objects.get(), value=0.5)
    gates = html(CsrfClient(maintainer).get("/regression/"))
    assert "Create baseline" in gates and 'value="delete"' in gates


def _command(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_launch_run_for_a_user_checks_the_role_and_sets_the_owner(user, viewer, dataset, sent_tasks):
    with pytest.raises(CommandError, match="needs the member role; you are a viewer"):
        _command("launch_run", "--dataset", dataset.key, "--user", "victor")
    _command("launch_run", "--dataset", dataset.key, "--user", "alice")
    _command("launch_run", "--dataset", dataset.key)  # the operator: nobody's run
    assert list(Run.objects.order_by("pk").values_list("created_by", flat=True)) == [user.pk, None]


def test_promote_run_for_a_member_is_refused_and_for_a_maintainer_done(user, maintainer, dataset):
    run = completed_run(dataset, created_by=user)
    with pytest.raises(CommandError, match="needs the maintainer role; you are a member"):
        _command("promote_run", str(run.pk), "reasoner", "--user", "alice")
    assert not ModelVersion.objects.exists()
    _command("promote_run", str(run.pk), "reasoner", "--user", "maya")
    assert ModelVersion.objects.get().created_by == maintainer


def test_evaluate_run_and_import_evalset_for_a_user(user, viewer, dataset, sent_evaluations, tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text('{"id": "q1", "prompt": "1+1?", "expected_answer": "2"}\n')
    with pytest.raises(CommandError, match="you are a viewer"):
        _command("import_evalset", str(path), "--name", "refused", "--user", "victor")
    _command("import_evalset", str(path), "--name", "kept", "--user", "alice")
    assert [(s.name, s.created_by) for s in EvalSet.objects.all()] == [("kept", user)]
    run = completed_run(dataset)
    with pytest.raises(CommandError, match="you are a viewer"):
        _command("evaluate_run", str(run.pk), "kept", "--user", "victor")
    _command("evaluate_run", str(run.pk), "kept", "--user", "alice")
    assert Evaluation.objects.get().created_by == user


def test_a_command_for_an_unknown_user_stops(dataset):
    with pytest.raises(CommandError, match="No user 'ghost'"):
        _command("launch_run", "--dataset", dataset.key, "--user", "ghost")
    assert not Run.objects.exists()
