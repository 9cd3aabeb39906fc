"""Building datasets: versions, immutability, seeded order, strategies, limit, split, stats, filters."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from django.utils import timezone

from traces.choices import DatasetStatus, Split
from traces.datasets.building import BuildInvalid, NoTracesMatch
from traces.models import Dataset, DatasetMember, DatasetName, Trace
from traces.tests.datasets_support import (
    build,
    make_trace,
    md5_key,
    md5_order,
    member_ids,
    memberships,
    walk_trace_api,
)

pytestmark = pytest.mark.django_db


def traces(count: int, **kwargs: Any) -> list[Trace]:
    return [make_trace(**kwargs) for _ in range(count)]


def stepped(count: int, tag: str) -> list[dict[str, Any]]:
    return [{"i": i, "type": "compute", "content": f"{tag} step {i}"} for i in range(count)]


# Versioning and immutability


def test_building_an_existing_name_creates_the_next_version():
    traces(3)
    first = build("arith")
    second = build("arith")
    third = build("arith")
    other = build("other")
    assert [first.key, second.key, third.key, other.key] == ["arith@v1", "arith@v2", "arith@v3", "other@v1"]
    assert Dataset.objects.filter(name="arith").count() == 3
    assert all(d.status == DatasetStatus.READY for d in (first, second, third, other))


def test_every_version_ever_built_stays_taken_after_deletes():
    traces(3)
    for _ in range(3):
        build("arith")
    Dataset.objects.filter(name="arith").delete()
    assert build("arith").key == "arith@v4"
    assert DatasetName.objects.get(name="arith").last_version == 4


def test_versions_stored_without_the_counter_are_respected():
    traces(2)
    first = build("arith")
    # A row written around the counter (older data, a fixture) still moves the next number on.
    Dataset.objects.create(name="arith", version=7, spec=first.spec, stats=first.stats)
    assert build("arith").key == "arith@v8"
    assert build("fresh").key == "fresh@v1"


def test_an_older_version_keeps_its_members_and_stats_when_traces_are_added_and_rebuilt():
    now = timezone.now()
    for n in range(4):
        make_trace(created_at=now - dt.timedelta(minutes=10 - n), meta={"source": "gsm"})
    v1 = build("gsm", source="gsm", validation_fraction=0.25, validation_seed=3)
    v1_members = memberships(v1)
    v1_stats = dict(v1.stats)
    assert v1_stats["count"] == 4

    for n in range(3):
        make_trace(created_at=now + dt.timedelta(minutes=n), meta={"source": "gsm"})
    v1.refresh_from_db()
    assert memberships(v1) == v1_members
    assert v1.stats == v1_stats

    v2 = build("gsm", source="gsm", validation_fraction=0.25, validation_seed=3)
    assert v2.key == "gsm@v2"
    assert v2.stats["count"] == 7
    v1.refresh_from_db()
    assert memberships(v1) == v1_members
    assert v1.stats == v1_stats
    assert DatasetMember.objects.filter(dataset=v1).count() == 4


# Seeded determinism and strategies


def test_the_same_inputs_and_seed_give_the_same_members_order_and_split():
    traces(25)
    spec = {"strategy": "random", "seed": 42, "validation_fraction": 0.2, "validation_seed": 9}
    first = build("rand", **spec)
    second = build("rand", **spec)
    assert memberships(first) == memberships(second)
    assert len(member_ids(first, Split.VALIDATION)) == 5


def test_a_different_seed_gives_a_different_order():
    traces(25)
    a = build("rand", strategy="random", seed=1)
    b = build("rand", strategy="random", seed=2)
    assert sorted(member_ids(a)) == sorted(member_ids(b))
    assert member_ids(a) != member_ids(b)


@pytest.mark.parametrize("seed", [0, 7, 2**31 - 1])
def test_random_order_is_md5_of_seed_and_trace_id(seed):
    ids = [t.pk for t in traces(30)]
    dataset = build("rand", strategy="random", seed=seed)
    # The same ids in the same order on PostgreSQL and SQLite: md5('<seed>:<id>').
    assert member_ids(dataset) == md5_order(seed, ids)
    positions = list(
        DatasetMember.objects.filter(dataset=dataset).order_by("position").values_list("position", flat=True)
    )
    assert positions == list(range(30))


def test_random_with_a_limit_takes_the_first_ids_of_the_seeded_order():
    ids = [t.pk for t in traces(20)]
    dataset = build("rand", strategy="random", seed=5, limit=6)
    assert member_ids(dataset) == md5_order(5, ids)[:6]


def test_latest_is_newest_first_with_ties_broken_by_higher_id():
    now = timezone.now()
    old = make_trace(created_at=now - dt.timedelta(days=3))
    tie_a = make_trace(created_at=now - dt.timedelta(days=1))
    tie_b = make_trace(created_at=now - dt.timedelta(days=1))
    new = make_trace(created_at=now)
    mid = make_trace(created_at=now - dt.timedelta(days=2))
    dataset = build("latest", strategy="latest")
    assert member_ids(dataset) == [new.pk, tie_b.pk, tie_a.pk, mid.pk, old.pk]
    assert member_ids(build("latest", limit=2)) == [new.pk, tie_b.pk]


def test_all_is_oldest_first_and_respects_the_limit():
    now = timezone.now()
    made = [make_trace(created_at=now - dt.timedelta(hours=h)) for h in (5, 1, 3, 2, 4)]
    by_age = sorted(made, key=lambda t: t.created_at)
    dataset = build("all", strategy="all")
    assert member_ids(dataset) == [t.pk for t in by_age]
    assert member_ids(build("all", strategy="all", limit=3)) == [t.pk for t in by_age[:3]]


@pytest.mark.parametrize(
    ("n", "fraction", "expected"),
    [(20, 0.25, 5), (10, 0.5, 5), (7, 0.1, 1), (3, 0.1, 1), (2, 0.5, 1), (1, 0.5, 0), (10, 0.0, 0)],
)
def test_validation_split_size_is_rounded_fraction_at_least_one_at_most_n_minus_one(n, fraction, expected):
    traces(n)
    dataset = build("split", validation_fraction=fraction, validation_seed=4)
    assert len(member_ids(dataset, Split.VALIDATION)) == expected
    assert len(member_ids(dataset, Split.TRAIN)) == n - expected
    assert dataset.stats["validation"] == expected
    assert dataset.stats["train"] == n - expected


def test_validation_members_are_chosen_by_md5_of_validation_seed_and_trace_id():
    ids = [t.pk for t in traces(20)]
    dataset = build("split", strategy="random", seed=1, validation_fraction=0.3, validation_seed=77)
    expected = set(sorted(ids, key=lambda i: (md5_key(77, i), i))[:6])
    assert set(member_ids(dataset, Split.VALIDATION)) == expected
    # The split does not reorder: positions still follow the selection order.
    assert member_ids(dataset) == md5_order(1, ids)
    other = build("split", strategy="random", seed=1, validation_fraction=0.3, validation_seed=78)
    assert set(member_ids(other, Split.VALIDATION)) != expected


# Stats


def test_stats_are_computed_and_stored_at_build_time():
    docs: list[dict[str, Any]] = [
        {"prompt": "aaaa", "steps": stepped(1, "x"), "final_answer": "1"},
        {"prompt": "bbbbbbbb", "steps": stepped(2, "yy"), "final_answer": "22"},
        {"prompt": "c", "steps": stepped(4, "zzz"), "final_answer": "333"},
    ]
    made = [make_trace(**doc) for doc in docs]
    chars = [
        len(d["prompt"]) + len(d["final_answer"]) + sum(len(s["content"]) for s in d["steps"]) for d in docs
    ]
    assert [t.char_count for t in made] == chars
    dataset = build("stats", validation_fraction=0.34, validation_seed=0)
    stored = Dataset.objects.get(pk=dataset.pk).stats
    assert stored == {
        "count": 3,
        "train": 2,
        "validation": 1,
        "steps_min": 1,
        "steps_max": 4,
        "steps_mean": round(7 / 3, 2),
        "chars_mean": round(sum(chars) / 3, 1),
        "chars_total": sum(chars),
        "tokens_estimate": math.ceil(sum(chars) / 4),
    }
    assert sum(chars) % 4 != 0, "a total that is not a multiple of 4 shows the estimate rounds up"


def test_stats_describe_only_the_selected_members():
    now = timezone.now()
    make_trace(steps=stepped(9, "old"), created_at=now - dt.timedelta(days=1))
    make_trace(steps=stepped(2, "new"), created_at=now)
    dataset = build("newest", limit=1)
    assert dataset.stats["count"] == 1
    assert dataset.stats["steps_min"] == dataset.stats["steps_max"] == 2


# Explicit ids, filters and mismatches


def test_explicit_trace_ids_build_exactly_those_traces():
    made = traces(6)
    wanted = [made[4].pk, made[1].pk, made[4].pk, made[2].pk]
    dataset = build("picked", trace_ids=wanted, strategy="all")
    assert member_ids(dataset) == sorted({made[1].pk, made[2].pk, made[4].pk})
    assert dataset.spec["trace_ids"] == [made[4].pk, made[1].pk, made[2].pk]


def test_unknown_trace_ids_are_refused_naming_them_and_nothing_is_created():
    made = traces(2)
    with pytest.raises(BuildInvalid) as info:
        build("picked", trace_ids=[made[0].pk, 999_999, 888_888])
    assert list(info.value.errors) == ["trace_ids"]
    assert "888888, 999999" in info.value.errors["trace_ids"][0]
    assert not Dataset.objects.exists()
    assert not DatasetMember.objects.exists()


def test_no_matching_trace_is_refused_and_nothing_is_created():
    make_trace(meta={"source": "gsm"})
    with pytest.raises(NoTracesMatch) as info:
        build("empty", source="nowhere")
    assert info.value.errors == {"non_field_errors": ["No traces match."]}
    assert not Dataset.objects.exists()


@pytest.fixture
def corpus() -> list[Trace]:
    """Traces varied in every filterable field."""
    now = timezone.now()
    made = []
    sources = ["gsm", "arc", "gsm", ""]
    tag_sets = [["math"], ["logic"], ["math", "logic"], []]
    words = ["apple", "banana", "cherry"]
    for n in range(24):
        meta: dict[str, Any] = {}
        if sources[n % 4]:
            meta["source"] = sources[n % 4]
        if tag_sets[n % 3 if n % 5 else 3]:
            meta["tags"] = tag_sets[n % 3 if n % 5 else 3]
        made.append(
            make_trace(
                prompt=f"How many {words[n % 3]}s are there in basket {n}?",
                steps=stepped(1 + n % 6, words[(n + 1) % 3]),
                meta=meta,
                created_at=now - dt.timedelta(days=n % 8, minutes=n),
            )
        )
    return made


def iso_days_ago(days: float) -> str:
    return (timezone.now() - dt.timedelta(days=days)).isoformat()


FILTER_CASES: list[dict[str, Any]] = [
    {"source": "gsm"},
    {"tag": "logic"},
    {"q": "banana"},
    {"min_steps": 2, "max_steps": 4},
    {"created_after": "days:5", "created_before": "days:1"},
    {"source": "gsm", "tag": "math", "min_steps": 3},
    {"q": "apple", "created_after": "days:4"},
    {"tag": "math", "max_steps": 4, "source": "arc"},
]


@pytest.mark.parametrize("filters", FILTER_CASES, ids=lambda f: "&".join(sorted(f)))
def test_a_filter_build_takes_exactly_the_traces_the_trace_list_api_returns(api, corpus, filters):
    params = {
        k: iso_days_ago(float(v.split(":")[1])) if isinstance(v, str) and v.startswith("days:") else v
        for k, v in filters.items()
    }
    listed = walk_trace_api(api, params)
    assert 0 < len(listed) < len(corpus), "the case should select some but not all traces"
    response = api.post("/api/datasets", {"name": "parity", "strategy": "latest", **params}, format="json")
    assert response.status_code == 201, response.content
    dataset = Dataset.objects.by_key(response.json()["key"])
    # Both are newest first, so the order must match too, not only the set.
    assert member_ids(dataset) == listed
    assert response.json()["stats"]["count"] == len(listed)


def test_a_build_without_filters_takes_every_trace(api, corpus):
    response = api.post("/api/datasets", {"name": "everything", "strategy": "all"}, format="json")
    assert response.status_code == 201, response.content
    dataset = Dataset.objects.by_key("everything@v1")
    assert member_ids(dataset) == [t.pk for t in sorted(corpus, key=lambda t: (t.created_at, t.pk))]
