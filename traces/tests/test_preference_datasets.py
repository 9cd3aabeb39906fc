"""Preference datasets: built from pair filters or ids like SFT ones (name@vN, seeded strategies, validation
split, protection), exported as dpo JSONL in a chat template."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from runs.training import templates
from traces.choices import DatasetStatus, Split
from traces.datasets.building import build_dataset, run_queued_build, validate_build_spec
from traces.datasets.exporting import iter_dataset_lines
from traces.models import Dataset, PreferenceMember, PreferencePair
from traces.tests.datasets_support import md5_order
from traces.tests.factories import make_pair, make_trace

pytestmark = pytest.mark.django_db

URL = "/api/datasets"


def pair_ids(dataset: Dataset, split: str | None = None) -> list[int]:
    qs = PreferenceMember.objects.filter(dataset=dataset).order_by("position")
    if split is not None:
        qs = qs.filter(split=split)
    return list(qs.values_list("pair_id", flat=True))


def build(name: str, user: Any = None, **spec: Any) -> Dataset:
    return build_dataset(validate_build_spec({"name": name, "kind": "preference", **spec}), user)


@pytest.fixture
def pairs(user: Any) -> list[PreferencePair]:
    made = [make_pair(i, source="compare" if i % 2 else "import", created_by=user if i < 3 else None) for i in range(6)]
    return made


def test_the_api_builds_a_preference_dataset_from_pair_filters(api, pairs):
    response = api.post(URL, {"name": "prefs", "kind": "preference", "source": "compare"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["key"], body["kind"], body["stats"]["count"]) == ("prefs@v1", "preference", 3)
    dataset = Dataset.objects.by_key("prefs@v1")
    assert pair_ids(dataset) == [p.pk for p in reversed(pairs) if p.source == "compare"]  # latest first
    assert body["stats"]["tokens_estimate"] > 0
    again = api.post(URL, {"name": "prefs", "kind": "preference", "created_by": "alice"}, format="json")
    assert again.json()["key"] == "prefs@v2"
    assert again.json()["stats"]["count"] == 3
    listed = api.get(URL, {"kind": "preference"}).json()["results"]
    assert [row["key"] for row in listed] == ["prefs@v2", "prefs@v1"]
    assert api.get(URL, {"kind": "sft"}).json()["results"] == []
    assert "kind" in api.get(URL, {"kind": "rl"}).json()


def test_random_selection_is_seeded_and_the_split_is_reproducible(pairs):
    ids = [p.pk for p in pairs]
    first = build("shuffled", strategy="random", seed=7, validation_fraction=0.5, validation_seed=3)
    second = build("shuffled", strategy="random", seed=7, validation_fraction=0.5, validation_seed=3)
    assert pair_ids(first) == md5_order(7, ids) == pair_ids(second)
    assert pair_ids(first, Split.VALIDATION) == pair_ids(second, Split.VALIDATION)
    assert len(pair_ids(first, Split.VALIDATION)) == 3
    assert (first.stats["train"], first.stats["validation"]) == (3, 3)
    other = build("shuffled", strategy="random", seed=8)
    assert pair_ids(other) == md5_order(8, ids) != pair_ids(first)


def test_pair_ids_select_exactly_those_pairs_and_unknown_ones_are_named(api, pairs):
    dataset = build("picked", pair_ids=[pairs[4].pk, pairs[1].pk], strategy="all")
    assert sorted(pair_ids(dataset)) == sorted([pairs[4].pk, pairs[1].pk])
    response = api.post(URL, {"name": "x", "kind": "preference", "pair_ids": [pairs[0].pk, 999999]}, format="json")
    assert response.status_code == 400
    assert "999999" in response.json()["pair_ids"][0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "preference", "tag": "x"}, "tag"),
        ({"kind": "preference", "min_steps": 2}, "min_steps"),
        ({"kind": "preference", "trace_ids": [1]}, "trace_ids"),
        ({"kind": "preference", "source": "elsewhere"}, "source"),
        ({"kind": "preference", "pair_ids": [1], "source": "api"}, "pair_ids"),
        ({"kind": "preference", "pair_ids": "1,2"}, "pair_ids"),
        ({"kind": "sft", "pair_ids": [1]}, "pair_ids"),
        ({"created_by": "alice"}, "created_by"),
        ({"kind": "rlhf"}, "kind"),
    ],
)
def test_a_bad_preference_build_is_refused_naming_the_field(api, pairs, body, field):
    response = api.post(URL, {"name": "bad", **body}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Dataset.objects.exists()


def test_no_matching_pairs_is_a_400(api, pairs):
    response = api.post(URL, {"name": "none", "kind": "preference", "q": "zebra"}, format="json")
    assert response.status_code == 400
    assert response.json()["non_field_errors"] == ["No preference pairs match."]


def test_a_pair_in_a_preference_dataset_cannot_be_deleted(api, user, pairs):
    build("held", user, pair_ids=[pairs[0].pk])
    response = api.delete(f"/api/preference-pairs/{pairs[0].pk}")
    assert response.status_code == 409
    assert response.json()["datasets"] == ["held@v1"]
    assert PreferencePair.objects.filter(pk=pairs[0].pk).exists()
    # Once the dataset is gone the pair may go.
    assert api.delete(f"{URL}/held@v1").status_code == 204
    assert api.delete(f"/api/preference-pairs/{pairs[0].pk}").status_code == 204


def test_a_queued_preference_build_is_built_by_the_worker_function(pairs):
    spec = validate_build_spec({"name": "big", "kind": "preference", "strategy": "random", "seed": 5})
    dataset = Dataset.objects.create(
        name="big", version=1, kind="preference", spec=spec.as_json(), status=DatasetStatus.PENDING
    )
    assert run_queued_build(dataset.pk) == "ready"
    dataset.refresh_from_db()
    assert dataset.stats["count"] == 6
    assert pair_ids(dataset) == md5_order(5, [p.pk for p in pairs])


def records(lines: Any) -> list[dict[str, str]]:
    return [json.loads(line) for line in lines]


def test_dpo_lines_hold_the_prompt_turn_and_both_answers_as_model_turns(pairs):
    dataset = build("dpo", strategy="all", validation_fraction=0.34, validation_seed=1)
    lines = records(iter_dataset_lines(dataset, "dpo", "all"))
    assert len(lines) == 6
    first = pairs[0]
    assert lines[0] == {
        "prompt": f"<start_of_turn>user\n{first.prompt}<end_of_turn>\n<start_of_turn>model\n",
        "chosen": f"{first.chosen}<end_of_turn>",
        "rejected": f"{first.rejected}<end_of_turn>",
    }
    chatml = records(iter_dataset_lines(dataset, "dpo", "all", template="chatml"))
    assert chatml[0]["prompt"] == templates.CHATML.head(first.prompt)
    assert chatml[0]["chosen"] == f"{first.chosen}<|im_end|>"
    plain = records(iter_dataset_lines(dataset, "dpo", "all", template="plain"))
    assert plain[0] == {"prompt": f"{first.prompt}\n", "chosen": first.chosen, "rejected": first.rejected}
    train = records(iter_dataset_lines(dataset, "dpo", "train"))
    validation = records(iter_dataset_lines(dataset, "dpo", "validation"))
    assert (len(train), len(validation)) == (4, 2)
    assert sorted(map(str, train + validation)) == sorted(map(str, lines))


def test_formats_follow_the_dataset_kind(pairs):
    preference = build("dpo")
    make_trace()
    sft = build_dataset(validate_build_spec({"name": "sft"}))
    with pytest.raises(ValueError, match="preference dataset"):
        list(iter_dataset_lines(preference, "tunix_sft"))
    with pytest.raises(ValueError, match="for preference datasets"):
        list(iter_dataset_lines(sft, "dpo"))


def test_the_export_api_streams_dpo_and_refuses_other_formats(api, pairs):
    build("dpo", validation_fraction=0.5)
    response = api.get(f"{URL}/dpo@v1/export", {"format": "dpo", "split": "train", "template": "llama3"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert 'filename="dpo-v1.dpo.llama3.train.jsonl"' in response["Content-Disposition"]
    rows = records(b"".join(response.streaming_content).splitlines())
    assert len(rows) == 3 and all(r["chosen"].endswith("<|eot_id|>") for r in rows)
    refused = api.get(f"{URL}/dpo@v1/export", {"format": "trace"})
    assert refused.status_code == 400 and "format" in refused.json()
    assert "template" in api.get(f"{URL}/dpo@v1/export", {"format": "dpo", "template": "nope"}).json()


def test_the_commands_build_and_export_a_preference_dataset(tmp_path, pairs):
    out = io.StringIO()
    call_command("build_dataset", "cmd", "--kind", "preference", "--source", "import", stdout=out)
    assert "Built cmd@v1: 3 pairs" in out.getvalue()
    target = tmp_path / "cmd.jsonl"
    call_command("export_dataset", "cmd@v1", str(target), stderr=io.StringIO())
    rows = records(target.read_bytes().splitlines())
    assert len(rows) == 3 and set(rows[0]) == {"prompt", "chosen", "rejected"}
    with pytest.raises(CommandError, match="preference dataset"):
        call_command("export_dataset", "cmd@v1", str(target), "--format", "chat", stderr=io.StringIO())
    with pytest.raises(CommandError, match="tag"):
        call_command("build_dataset", "cmd", "--kind", "preference", "--tag", "x", stdout=io.StringIO())


def test_the_build_page_builds_a_preference_dataset(page, pairs):
    preview = page.get("/datasets/preview/", {"kind": "preference", "source": "compare"}).content.decode()
    assert "preference pairs match" in preview and ">3<" in preview
    response = page.post(
        "/datasets/new/", {"name": "page-prefs", "kind": "preference", "source": "compare", "strategy": "latest"}
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    detail = page.get(response["Location"]).content.decode()
    assert "A preference dataset" in detail
    assert "format=dpo" in detail and "format=tunix_sft" not in detail
    assert f'href="/preferences/{pairs[5].pk}/"' in detail
    listing = page.get("/datasets/").content.decode()
    assert "preference</span>" in listing
    refused = page.post("/datasets/new/", {"name": "bad", "kind": "preference", "tag": "x", "strategy": "latest"})
    assert refused.status_code == 400 and "Not a preference pair filter" in refused.content.decode()


def test_the_page_export_refuses_a_format_of_the_other_kind(page, pairs):
    build("pagedpo")
    assert page.get("/datasets/pagedpo@v1/export/", {"format": "dpo"}).status_code == 200
    refused = page.get("/datasets/pagedpo@v1/export/", {"format": "trace"})
    assert refused.status_code == 400 and b"format" in refused.content
