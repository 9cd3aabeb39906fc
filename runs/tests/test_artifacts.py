"""Run files download from the API and the pages; nothing outside the run's own folder ever does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from runs.launching import artifact_path, list_artifacts
from runs.models import Run
from runs.tests.run_support import finished_run, output

pytestmark = pytest.mark.django_db

SECRET = b"top secret outside the run folder"


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


@pytest.fixture
def run(dataset: Any) -> Run:
    return finished_run(dataset)


@pytest.fixture
def secret(run_folders: Path) -> Path:
    """A file next to RUNS_DIR that no request may read."""
    path = run_folders / "secret.txt"
    path.write_bytes(SECRET)
    return path


def urls(run: Run, rel: str) -> list[str]:
    return [f"/api/runs/{run.pk}/artifacts/{rel}", f"/runs/{run.pk}/artifacts/{rel}"]


@pytest.mark.parametrize(
    "rel",
    [
        "final/model.safetensors",
        "final/config.json",
        "checkpoints/10/model/data.bin",
        "data/train.jsonl",
        "job.json",
    ],
)
def test_a_run_file_downloads_with_its_exact_bytes(api, page, run, rel):
    expected = (output(run) / rel).read_bytes()
    for client, url in zip((api, page), urls(run, rel), strict=True):
        response = client.get(url)
        assert response.status_code == 200, url
        assert body(response) == expected
        name = rel.rsplit("/", 1)[-1]
        assert response["Content-Disposition"].startswith("attachment")
        assert name in response["Content-Disposition"]


@pytest.mark.parametrize(
    "rel",
    [
        "../secret.txt",
        "../../secret.txt",
        "final/../../secret.txt",
        "final/../../../secret.txt",
        "%2e%2e/secret.txt",
        "%2e%2e%2f%2e%2e%2fsecret.txt",
        "..%2F..%2Fsecret.txt",
        "final%2F..%2F..%2F..%2Fsecret.txt",
        "%252e%252e/%252e%252e/secret.txt",
        "/etc/passwd",
        "//etc/passwd",
        "%2Fetc%2Fpasswd",
        "~/secret.txt",
        "final",
        "final/",
        "checkpoints",
        ".",
        "missing.bin",
    ],
)
def test_traversal_absolute_paths_folders_and_missing_files_are_404(api, page, run, secret, rel):
    for client, url in zip((api, page), urls(run, rel), strict=True):
        response = client.get(url)
        assert response.status_code == 404, (url, response.status_code)
        content = body(response) if response.streaming else response.content
        assert SECRET not in content
        assert b"root:" not in content


def test_the_resolver_refuses_what_the_urls_cannot_express(run, secret):
    assert artifact_path(run, str(secret)) is None
    assert artifact_path(run, "../secret.txt") is None
    assert artifact_path(run, "") is None
    assert artifact_path(run, "final/config.json\x00.txt") is None
    assert artifact_path(run, "final/config.json") == (output(run) / "final" / "config.json").resolve()


def test_another_runs_files_are_not_reachable_through_this_run(api, page, dataset, run):
    # Run 1's folder is a string prefix of run 10's: "../" must not get there either.
    neighbour = finished_run(dataset)
    rel = f"../{neighbour.pk}/final/model.safetensors"
    for client, url in zip((api, page), urls(run, rel), strict=True):
        assert client.get(url).status_code == 404
    assert api.get(f"/api/runs/{neighbour.pk}/artifacts/final/model.safetensors").status_code == 200


def test_a_symlink_inside_the_run_folder_pointing_outside_is_404(api, page, run, secret):
    os.symlink(secret, output(run) / "final" / "leak.txt")
    os.symlink(secret.parent, output(run) / "outside")
    for rel in ("final/leak.txt", "outside/secret.txt"):
        for client, url in zip((api, page), urls(run, rel), strict=True):
            response = client.get(url)
            assert response.status_code == 404, url
    listed = {f["path"] for f in list_artifacts(run)}
    assert "final/leak.txt" not in listed
    assert not any(p.startswith("outside/") for p in listed)


def test_a_symlink_to_a_file_of_the_same_run_is_refused_too(api, run):
    os.symlink(output(run) / "final" / "config.json", output(run) / "alias.json")
    os.symlink(output(run) / "final", output(run) / "alias")
    assert api.get(f"/api/runs/{run.pk}/artifacts/alias.json").status_code == 404
    assert api.get(f"/api/runs/{run.pk}/artifacts/alias/config.json").status_code == 404


def test_a_run_whose_folder_is_not_under_runs_dir_serves_nothing(api, page, run, secret, settings):
    for tampered in (str(secret.parent), str(settings.RUNS_DIR), f"{settings.RUNS_DIR}/../", "/"):
        Run.objects.filter(pk=run.pk).update(output_dir=tampered)
        run.refresh_from_db()
        assert list_artifacts(run) == []
        for client, url in zip((api, page), urls(run, "secret.txt"), strict=True):
            assert client.get(url).status_code == 404
        assert api.get(f"/api/runs/{run.pk}/artifacts").json()["files"] == []


def test_artifacts_of_an_unknown_run_are_404(api, page):
    assert api.get("/api/runs/424242/artifacts/final/config.json").status_code == 404
    assert page.get("/runs/424242/artifacts/final/config.json").status_code == 404


def test_downloads_need_a_login(client, run):
    assert client.get(f"/api/runs/{run.pk}/artifacts/final/config.json").status_code in (401, 403)
    response = client.get(f"/runs/{run.pk}/artifacts/final/config.json")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_the_folders_owner_file_is_bookkeeping_not_an_artifact(api, run):
    (output(run) / "owner.json").write_text('{"run_id": 1, "token": "x"}')
    listed = [f["path"] for f in list_artifacts(run)]
    assert "owner.json" not in listed
    assert "final/model.safetensors" in listed
