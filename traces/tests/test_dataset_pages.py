"""Dataset pages: build form with live preview, detail (stats, sample, status polling), list with search."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from traces.choices import DatasetStatus
from traces.datasets.building import SAMPLE_SIZE
from traces.models import Dataset
from traces.tests.datasets_support import build, make_trace, member_ids

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def fruit() -> None:
    """Five traces about apples (source gsm), three about bananas (source arc)."""
    for n in range(5):
        make_trace(prompt=f"How many apples in basket {n}?", meta={"source": "gsm"}, steps=1 + n)
    for word in ("evenly", "quickly", "slowly"):
        make_trace(prompt=f"Share bananas {word}", meta={"source": "arc"}, steps=2)


def match_line(html: str) -> str:
    text = re.sub(r"<[^>]+>", "", html)
    found = re.search(r"\d+ traces? match(es)?[^.]*\.", text)
    assert found, html
    return " ".join(found.group(0).split())


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, "8 traces match."),
        ({"q": "apples"}, "5 traces match."),
        ({"source": "arc"}, "3 traces match."),
        ({"source": "arc", "q": "quickly"}, "1 trace matches."),
        ({"source": "nowhere"}, "0 traces match."),
        ({"q": "apples", "limit": "2"}, "5 traces match; the dataset will take 2."),
        ({"min_steps": "3"}, "3 traces match."),
    ],
)
def test_live_preview_counts_the_matching_traces(page, fruit, params, expected):
    response = page.get("/datasets/preview/", params, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.strip().startswith('<div id="preview"')
    assert match_line(html) == expected


def test_live_preview_shows_bad_values_instead_of_a_count(page, fruit):
    response = page.get("/datasets/preview/", {"min_steps": "many", "limit": "0"}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "min_steps: Enter a whole number." in html
    assert "limit: Ensure this value is between 1 and 1,000,000." in html
    assert "match" not in re.sub(r"<[^>]+>", "", html)


def test_build_page_shows_the_form_with_a_first_count_and_prefills_the_name(page, fruit):
    response = page.get("/datasets/new/", {"name": "gsm-math"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="name"' in html
    assert 'value="gsm-math"' in html
    assert 'hx-get="/datasets/preview/"' in html
    assert match_line(html) == "8 traces match."


def test_posting_the_form_builds_and_redirects_to_the_detail_page(page, user, fruit):
    response = page.post(
        "/datasets/new/",
        {
            "name": "apples",
            "description": "apple counting",
            "q": "apples",
            "strategy": "random",
            "seed": "4",
            "limit": "1000",
            "validation_fraction": "0.2",
            "validation_seed": "0",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/datasets/apples@v1/"
    dataset = Dataset.objects.by_key("apples@v1")
    assert dataset.status == DatasetStatus.READY
    assert dataset.created_by == user
    assert dataset.description == "apple counting"
    assert dataset.stats["count"] == 5
    assert dataset.stats["validation"] == 1
    detail = page.get(response["Location"])
    assert "Built apples@v1." in detail.content.decode()
    again = page.post("/datasets/new/", {"name": "apples", "strategy": "latest", "source": "arc"})
    assert again["Location"] == "/datasets/apples@v2/"


def test_detail_page_shows_the_stored_stats(page, fruit):
    dataset = build("all-fruit", validation_fraction=0.25, validation_seed=1)
    stats = dataset.stats
    html = page.get("/datasets/all-fruit@v1/").content.decode()
    assert f'<span class="value" id="stat-count">{stats["count"]}</span>' in html
    assert f'<span class="value">{stats["train"]}</span><span class="label">train</span>' in html
    assert f'<span class="value">{stats["validation"]}</span><span class="label">validation</span>' in html
    steps = f'{stats["steps_min"]} / {stats["steps_mean"]} / {stats["steps_max"]}'
    assert steps == "1 / 2.62 / 5"  # (1+2+3+4+5 + 2+2+2) / 8 = 2.625
    assert steps in html
    assert f'<span class="value">{stats["chars_mean"]}</span>' in html
    assert f"≈{stats['tokens_estimate']}" in html
    # Stats are read from the row, not recomputed: what is stored is what is shown.
    Dataset.objects.filter(pk=dataset.pk).update(stats={**stats, "tokens_estimate": 424242})
    assert "≈424242" in page.get("/datasets/all-fruit@v1/").content.decode()


def test_detail_page_shows_a_sample_of_members_with_links(page):
    for n in range(SAMPLE_SIZE + 5):
        make_trace(prompt=f"Question number {n}")
    dataset = build("many", strategy="all")
    html = page.get(f"/datasets/{dataset.key}/").content.decode()
    assert f"First {SAMPLE_SIZE} members" in html
    ids = member_ids(dataset)
    for trace_id in ids[:SAMPLE_SIZE]:
        assert f'href="/traces/{trace_id}/"' in html
    for trace_id in ids[SAMPLE_SIZE:]:
        assert f'href="/traces/{trace_id}/"' not in html
    links = re.findall(r'href="/traces/(\d+)/"', html)
    assert [int(i) for i in links] == ids[:SAMPLE_SIZE]


def test_detail_page_offers_every_format_and_split_for_download(page, fruit):
    build("dl")
    html = page.get("/datasets/dl@v1/").content.decode()
    for fmt in ("trace", "tunix_sft", "training_example", "chat"):
        for split in ("all", "train", "validation"):
            assert f'href="/datasets/dl@v1/export/?format={fmt}&amp;split={split}"' in html


def test_status_fragment_of_a_ready_dataset_answers_286_to_stop_polling(page, fruit):
    build("done")
    response = page.get("/datasets/done@v1/", {"fragment": "status"}, **HTMX)
    assert response.status_code == 286
    assert response["HX-Refresh"] == "true"
    html = response.content.decode()
    assert html.strip().startswith('<div id="status"')
    assert "hx-trigger" not in html


@pytest.mark.parametrize("status", [DatasetStatus.PENDING, DatasetStatus.BUILDING])
def test_status_fragment_of_an_active_dataset_keeps_polling(page, status):
    Dataset.objects.create(name="busy", version=1, status=status)
    response = page.get("/datasets/busy@v1/", {"fragment": "status"}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'hx-get="/datasets/busy@v1/?fragment=status"' in html
    assert 'hx-trigger="every 2s"' in html
    full = page.get("/datasets/busy@v1/")
    assert full.status_code == 200
    assert 'hx-trigger="every 2s"' in full.content.decode()


def test_a_failed_dataset_shows_its_error_and_stops_polling(page):
    Dataset.objects.create(name="broken", version=1, status=DatasetStatus.FAILED, error="No traces match.")
    response = page.get("/datasets/broken@v1/", {"fragment": "status"}, **HTMX)
    assert response.status_code == 286
    assert "No traces match." in response.content.decode()


@pytest.mark.parametrize("key", ["nothing@v1", "bad-key", "x@v1x"])
def test_unknown_detail_is_404(page, key):
    assert page.get(f"/datasets/{key}/").status_code == 404


def test_list_page_shows_datasets_and_searches_them(page, fruit):
    build("gsm-math", description="grade school")
    build("arc-logic", description="puzzles")
    build("gsm-math")
    html = page.get("/datasets/").content.decode()
    for key in ("gsm-math@v1", "gsm-math@v2", "arc-logic@v1"):
        assert f'href="/datasets/{key}/"' in html
    found = page.get("/datasets/", {"q": "puzzle"}).content.decode()
    assert 'href="/datasets/arc-logic@v1/"' in found
    assert "gsm-math@v" not in found
    fragment = page.get("/datasets/", {"q": "gsm"}, **HTMX).content.decode()
    assert fragment.strip().startswith('<div id="dataset-table"')
    assert "gsm-math@v2" in fragment
    assert "arc-logic" not in fragment


def test_delete_page_asks_before_deleting(page, user, fruit):
    build("gone", user)
    assert page.get("/datasets/gone@v1/delete/").status_code == 200
    assert Dataset.objects.filter(name="gone").exists()
    assert page.post("/datasets/gone@v1/delete/").status_code == 302
    assert not Dataset.objects.filter(name="gone").exists()


@pytest.mark.parametrize(
    "url", ["/datasets/", "/datasets/new/", "/datasets/preview/", "/datasets/x@v1/", "/datasets/x@v1/export/"]
)
def test_dataset_pages_require_login(url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_delete_page_names_the_runs_that_keep_the_dataset(maintainer_page, user):
    from runs.tests.run_support import build_arithmetic_dataset, make_run

    dataset = build_arithmetic_dataset("used")
    runs = [make_run(dataset, created_by=user) for _ in range(2)]
    text = maintainer_page.get(f"/datasets/{dataset.key}/delete/").content.decode()
    assert "It cannot be deleted:</strong> 2 runs used it" in text
    for run in runs:
        assert f'<a href="/runs/{run.pk}/">run #{run.pk}</a>' in text
    assert "Delete dataset</button>" not in text


def test_the_build_page_and_the_api_default_to_no_validation_split(page, api, fruit):
    text = page.get("/datasets/new/").content.decode()
    assert re.search(r'name="validation_fraction" value="0"', text)
    response = api.post("/api/datasets", {"name": "api-default"}, format="json")
    assert response.status_code in (201, 202), response.content
    assert Dataset.objects.get(name="api-default").spec["validation_fraction"] == 0


@pytest.mark.django_db
def test_the_build_page_fills_in_a_seed_so_a_random_build_needs_no_extra_typing(page):
    for n in range(3):
        make_trace(prompt=f"seeded {n}")
    text = page.get("/datasets/new/").content.decode()
    match = re.search(r'name="seed" value="(\d+)"', text)
    assert match, "a seed is pre-filled"
    response = page.post("/datasets/new/", {"name": "seeded", "strategy": "random", "seed": match.group(1),
                                            "limit": "2", "validation_fraction": "0", "validation_seed": "0"})
    assert response.status_code == 302
    latest = page.post("/datasets/new/", {"name": "newest", "strategy": "latest", "seed": "42",
                                          "limit": "2", "validation_fraction": "0", "validation_seed": "0"})
    assert latest.status_code == 302
    assert Dataset.objects.get(name="seeded").spec["seed"] == int(match.group(1))
    assert Dataset.objects.get(name="newest").spec.get("seed") is None
