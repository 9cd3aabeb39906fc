"""The model registry: promote a completed run to name:vN (own copy, checksum, metrics, provenance), download it."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from django.conf import settings

from runs.choices import RunStatus
from runs.evaluation.running import EvaluationConflict
from runs.launching import delete_run
from runs.models import ModelVersion, RegisteredModel
from runs.registry.promotion import ARCHIVE, directory_checksum, promote
from runs.tests.eval_support import completed_run, hand_evaluation, make_eval_set, use_eval_folders
from runs.tests.run_support import finished_run, make_run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    use_eval_folders(settings, tmp_path)


def sha256_of_folder(folder: Path) -> str:
    """The registry's digest, recomputed independently: each file's relative path, NUL, bytes; sorted."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ARCHIVE):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def final_files(run) -> dict[str, bytes]:
    final = Path(run.output_dir) / "final"
    return {p.relative_to(final).as_posix(): p.read_bytes() for p in final.rglob("*") if p.is_file()}


def archive_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


@pytest.fixture
def run(dataset):
    """A completed run whose final/ folder holds model.safetensors, config.json and a nested file."""
    run = completed_run(dataset)
    (Path(run.output_dir) / "final" / "tokenizer").mkdir()
    (Path(run.output_dir) / "final" / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    return run


def test_promoting_copies_the_final_model_with_its_checksum_metrics_and_provenance(run):
    quiz = make_eval_set("quiz")
    hand_evaluation(run, quiz, {"q1": True, "q2": True, "q3": True, "q4": False})
    hand_evaluation(run, quiz, {"q1": False}, baseline=True)  # base-model scores are not the model's

    version = promote(run, "reasoner", description="sums")

    assert (version.model.name, version.version, version.run_id) == ("reasoner", 1, run.pk)
    assert version.model.description == "sums"
    target = Path(settings.REGISTRY_DIR) / "reasoner" / "v1"
    assert Path(version.path) == target
    copied = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert copied.pop(ARCHIVE)
    assert copied == final_files(run)
    assert version.checksum == sha256_of_folder(target) == directory_checksum(target)[0]
    assert version.size_bytes == sum(len(b) for b in copied.values())
    assert version.metrics == {
        "final_train_loss": 3.5,
        "best_eval_loss": 3.6,
        "final_eval_loss": None,
        "steps_done": 20,
        "accuracy/quiz": 0.75,
    }
    assert version.provenance["run"] == run.pk
    assert version.provenance["dataset"] == "arith@v1"
    assert version.provenance["base_model"] == "tiny"
    assert version.provenance["config"]["max_steps"] == run.max_steps
    assert version.provenance["config"]["method"] == "full"


def test_promoting_again_makes_the_next_version(run, dataset):
    first = promote(run, "reasoner")
    second = promote(completed_run(dataset), "reasoner")
    again = promote(run, "reasoner")
    assert [first.version, second.version, again.version] == [1, 2, 3]
    assert RegisteredModel.objects.count() == 1
    assert Path(settings.REGISTRY_DIR, "reasoner", "v3").is_dir()
    other = promote(run, "other-name")
    assert other.version == 1


def test_the_archive_holds_every_file_under_a_versioned_folder(run):
    version = promote(run, "reasoner")
    members = archive_members((Path(version.path) / ARCHIVE).read_bytes())
    assert members == {f"reasoner-v1/{name}": data for name, data in final_files(run).items()}


@pytest.mark.parametrize("status", [RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMEOUT])
def test_only_completed_runs_can_be_promoted_even_with_files(dataset, status):
    run = finished_run(dataset, status=status)
    assert (Path(run.output_dir) / "final" / "model.safetensors").is_file()
    with pytest.raises(EvaluationConflict):
        promote(run, "reasoner")
    assert not ModelVersion.objects.exists()


def test_a_run_without_a_final_model_cannot_be_promoted(dataset):
    with pytest.raises(EvaluationConflict, match="no final model"):
        promote(completed_run(dataset, files=False), "reasoner")
    with pytest.raises(EvaluationConflict):
        promote(make_run(dataset), "reasoner")  # still pending
    assert not ModelVersion.objects.exists()
    assert not RegisteredModel.objects.exists()


@pytest.mark.parametrize("name", ["", "Has Spaces", "UPPER", "x" * 101, "../escape"])
def test_a_model_name_must_be_a_slug(run, name):
    with pytest.raises(ValueError, match="name"):
        promote(run, name)


def test_the_api_promotes_lists_and_downloads(maintainer_api, run, dataset):
    response = maintainer_api.post("/api/models", {"run": run.pk, "name": "reasoner"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["model"], body["version"], body["run"]) == ("reasoner", 1, run.pk)
    assert body["checksum"] == sha256_of_folder(Path(settings.REGISTRY_DIR) / "reasoner" / "v1")
    second = maintainer_api.post("/api/models", {"run": completed_run(dataset).pk, "name": "reasoner"}, format="json")
    assert second.json()["version"] == 2

    listed = maintainer_api.get("/api/models").json()
    assert [m["name"] for m in listed] == ["reasoner"]
    assert [v["version"] for v in listed[0]["versions"]] == [2, 1]
    assert listed[0]["versions"][1]["provenance"]["dataset"] == "arith@v1"
    assert maintainer_api.get("/api/models/reasoner").json()["name"] == "reasoner"

    download = maintainer_api.get("/api/models/reasoner/versions/1/download")
    assert download.status_code == 200
    assert 'filename="reasoner-v1.tar.gz"' in download["Content-Disposition"]
    members = archive_members(b"".join(download.streaming_content))
    assert members == {f"reasoner-v1/{name}": data for name, data in final_files(run).items()}
    assert maintainer_api.get("/api/models/reasoner/versions/9/download").status_code == 404
    assert maintainer_api.get("/api/models/nope/versions/1/download").status_code == 404


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "reasoner"}, "run"),
        ({"run": 999999, "name": "reasoner"}, "run"),
        ({"run": "x", "name": "reasoner"}, "run"),
        ({"run": 1, "name": "Not a slug"}, "name"),
        ({"run": 1}, "name"),
    ],
)
def test_the_api_names_bad_promote_fields(maintainer_api, data, field, db):
    response = maintainer_api.post("/api/models", data, format="json")
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize("name", ["UPPER", "Mixed-Case", "dk0iWY0", "with space", "x" * 101, "../escape"])
def test_the_api_rejects_a_name_the_registry_cannot_take_with_a_400(maintainer_api, run, name):
    response = maintainer_api.post("/api/models", {"run": run.pk, "name": name}, format="json")
    assert response.status_code == 400, response.content
    assert "name" in response.json()
    assert not ModelVersion.objects.exists()
    assert not RegisteredModel.objects.exists()


def test_the_api_answers_409_for_a_run_without_a_final_model(maintainer_api, dataset):
    pending = make_run(dataset)
    response = maintainer_api.post("/api/models", {"run": pending.pk, "name": "reasoner"}, format="json")
    assert response.status_code == 409
    assert str(pending.pk) in response.json()["detail"]
    failed = finished_run(dataset, status=RunStatus.FAILED)
    assert maintainer_api.post("/api/models", {"run": failed.pk, "name": "reasoner"}, format="json").status_code == 409
    assert not ModelVersion.objects.exists()


def test_a_version_outlives_its_run(api, page, run):
    version = promote(run, "reasoner")
    files = final_files(run)
    run_id = run.pk
    delete_run(run)
    assert not Path(run.output_dir).exists()

    version.refresh_from_db()
    assert version.run_id is None
    assert version.provenance["run"] == run_id
    assert sha256_of_folder(Path(version.path)) == version.checksum
    download = api.get("/api/models/reasoner/versions/1/download")
    assert download.status_code == 200
    assert archive_members(b"".join(download.streaming_content)) == {
        f"reasoner-v1/{name}": data for name, data in files.items()
    }
    html = page.get("/models/").content.decode()
    assert f"#{run_id} (deleted)" in html


def test_the_models_page_lists_versions_and_downloads_them(page, run):
    version = promote(run, "reasoner")
    response = page.get("/models/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "reasoner" in html and "v1" in html
    assert version.checksum[:15] in html
    assert f'href="/runs/{run.pk}/"' in html
    assert "/models/reasoner/v1/download/" in html
    download = page.get("/models/reasoner/v1/download/")
    assert download.status_code == 200
    assert set(archive_members(b"".join(download.streaming_content))) >= {"reasoner-v1/model.safetensors"}
    assert page.get("/models/reasoner/v2/download/").status_code == 404


def test_the_models_page_with_nothing_promoted(page, db):
    assert "No models yet." in page.get("/models/").content.decode()


def test_the_run_page_promotes_a_completed_run(maintainer_page, run):
    response = maintainer_page.post(f"/runs/{run.pk}/promote/", {"name": "from-page"})
    assert response.status_code == 302
    assert response.url == "/models/"
    assert ModelVersion.objects.get().model.name == "from-page"
    html = maintainer_page.get(f"/runs/{run.pk}/").content.decode()
    assert "Promoted as" in html and "from-page:v1" in html


def test_the_run_page_explains_a_refused_promotion(maintainer_page, dataset):
    pending = make_run(dataset)
    response = maintainer_page.post(f"/runs/{pending.pk}/promote/", {"name": "x"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/runs/{pending.pk}/"
    assert "Cannot promote" in response.content.decode()
    response = maintainer_page.post(f"/runs/{pending.pk}/promote/", {"name": "Bad Name"}, follow=True)
    assert "Cannot promote" in response.content.decode()
    assert not ModelVersion.objects.exists()
