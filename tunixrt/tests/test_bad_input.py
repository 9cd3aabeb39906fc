"""Bad input never answers 500: each is a 4xx naming the field (API) or a 400 page / form error (pages).

The NUL cases matter on PostgreSQL, whose text and jsonb columns cannot hold U+0000 (the
driver fails before the query runs); the same answers are checked on SQLite.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from traces.models import Trace
from traces.tests.factories import trace_document

pytestmark = pytest.mark.django_db

NUL_MESSAGE = "Null characters are not allowed."
NOT_64_BITS = "Must be a number between -9,223,372,036,854,775,808 and 18,446,744,073,709,551,615"


@pytest.fixture
def csrf_page(user: Any) -> Client:
    """A logged-in browser session whose POSTs must carry the CSRF token (as a real browser's do)."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def csrf_post(client: Client, url: str, data: dict[str, Any], form_page: str) -> Any:
    client.get(form_page)
    return client.post(url, {**data, "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/runs/1/metrics?name=train%00loss", "name"),
        ("/api/leaderboard?eval_set=quiz%00", "eval_set"),
        ("/api/evaluations/compare?eval_set=quiz%00&a=1&b=2", "eval_set"),
        ("/api/eval-sets/quiz%00", "name"),
        ("/api/eval-sets/quiz%00/items", "name"),
        ("/api/datasets/arith%00@v1", "key"),
        ("/api/datasets?name=arith%00", "name"),
        ("/api/datasets?q=%00", "q"),
        ("/api/regression/baselines/gate%00", "name"),
        ("/api/regression/baselines/gate/check?run=1%00", "run"),
        ("/api/models/prod%00", "name"),
        ("/api/models/prod%00/versions/1/download", "name"),
        ("/api/traces?cursor=%00", "cursor"),
        ("/api/runs/1/artifacts/final/config.json%00", "path"),
        ("/api/no-such-thing%00", "path"),
        ("/api/traces?odd%00name=1", "odd\\0name"),
    ],
)
def test_a_nul_in_an_api_path_or_query_is_a_400_naming_the_parameter(api, url, field):
    response = api.get(url)

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {field: [NUL_MESSAGE]}


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/leaderboard/?eval_set=quiz%00", "eval_set"),
        ("/evaluations/compare/?eval_set=quiz%00&a=1&b=2", "eval_set"),
        ("/evaluations/sets/quiz%00/", "name"),
        ("/datasets/arith%00@v1/", "key"),
        ("/datasets/?q=%00", "q"),
        ("/traces/?tag=%00", "tag"),
        ("/runs/?dataset=arith%00", "dataset"),
        ("/regression/?baseline=gate%00&run=1", "baseline"),
        ("/models/prod%00/v1/download/", "name"),
        ("/runs/1/artifacts/final/config.json%00", "path"),
    ],
)
def test_a_nul_in_a_page_address_is_a_400_page_naming_the_parameter(page, url, name):
    response = page.get(url)

    assert response.status_code == 400
    html = response.content.decode()
    assert f"&#x27;{name}&#x27; must not contain NUL characters." in html
    assert 'id="bad-request"' in html


@pytest.mark.parametrize(
    ("url", "data", "form_page", "name"),
    [
        ("/regression/", {"action": "delete", "name": "gate\x00"}, "/regression/", "name"),
        ("/regression/", {"name": "gate", "run": "1", "eval_set": "quiz\x00"}, "/regression/", "eval_set"),
        ("/evaluations/", {"name": "quiz", "dataset": "arith\x00@v1"}, "/evaluations/", "dataset"),
        ("/runs/1/evaluate/", {"eval_set": "quiz\x00"}, "/evaluations/", "eval_set"),
        ("/runs/1/promote/", {"name": "prod\x00"}, "/models/", "name"),
    ],
)
def test_a_nul_in_a_page_form_is_a_400_page_naming_the_field(csrf_page, url, data, form_page, name):
    response = csrf_post(csrf_page, url, data, form_page)

    assert response.status_code == 400
    assert f"The form field &#x27;{name}&#x27; must not contain NUL characters." in response.content.decode()


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/datasets", {"name": "arith", "description": "a\x00b"}, "description"),
        ("/api/runs", {"dataset": "arith\x00@v1"}, "dataset"),
        ("/api/eval-sets", {"name": "quiz", "dataset": "arith\x00@v1"}, "dataset"),
        ("/api/regression/baselines", {"name": "gate", "run": 1, "eval_set": "quiz\x00"}, "eval_set"),
    ],
)
def test_a_nul_in_a_json_body_string_is_a_400_naming_the_field(maintainer_api, url, body, field):
    # A maintainer may post to every one of these (baselines are theirs), so validation is what answers.
    response = maintainer_api.post(url, body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()


def test_a_nul_in_an_eval_item_label_is_refused_by_line(api):
    items = [{"id": "q1", "prompt": "1 + 1?", "expected_answer": "2", "category": "sums\x00"}]

    response = api.post("/api/eval-sets", {"name": "quiz", "items": items}, format="json")

    assert response.status_code == 400, response.content
    assert response.json() == {"lines": [{"line": 1, "error": "category: contains NUL"}]}


@pytest.mark.parametrize(
    ("meta", "field", "message"),
    [
        ({"note": "a\x00b"}, "meta.note", "Must not contain NUL characters."),
        ({"tags": ["ok", "b\x00d"]}, "meta.tags[1]", "Must not contain NUL characters."),
        ({"deep": {"er": "\x00"}}, "meta.deep.er", "Must not contain NUL characters."),
        ({"deep": {"ke\x00y": 1}}, "meta.deep", "Keys must not contain NUL characters."),
    ],
)
def test_a_nul_anywhere_in_meta_is_refused_naming_its_path(api, meta, field, message):
    response = api.post("/api/traces", trace_document(meta=meta), format="json")

    assert response.status_code == 400, response.content
    assert response.json() == {field: [message]}
    assert Trace.objects.count() == 0


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/api/traces", "created_after"),
        ("/api/traces", "created_before"),
        ("/api/runs", "created_after"),
        ("/api/runs", "created_before"),
    ],
)
@pytest.mark.parametrize("offset", ["+16:00", "-16:00", "+23:59"])
def test_a_utc_offset_beyond_15_59_in_a_date_filter_is_a_400_naming_it(api, url, param, offset):
    response = api.get(url, {param: f"2024-01-01T00:00:00{offset}"})

    assert response.status_code == 400, response.content
    assert response.json() == {param: ["The UTC offset must be between -15:59 and +15:59."]}
    for within in ("+15:59", "-15:59", "Z"):
        assert api.get(url, {param: f"2024-01-01T00:00:00{within}"}).status_code == 200


@pytest.mark.parametrize("url", ["/traces/", "/runs/"])
def test_a_utc_offset_beyond_15_59_on_a_list_page_is_a_form_error(page, url):
    response = page.get(url, {"created_after": "2024-01-01T00:00:00+16:00"})

    assert response.status_code == 200
    assert "created_after: The UTC offset must be between -15:59 and +15:59." in response.content.decode()


def test_a_utc_offset_beyond_15_59_in_a_dataset_build_is_a_field_error(api):
    response = api.post("/api/datasets", {"name": "d", "created_after": "2024-01-01T00:00+16:00"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"created_after": ["The UTC offset must be between -15:59 and +15:59."]}


def test_a_cursor_with_a_large_utc_offset_pages_like_its_utc_instant(api):
    import base64

    cursor = base64.urlsafe_b64encode(b"2024-01-01T00:00:00+16:00|5").decode().rstrip("=")

    response = api.get("/api/traces", {"cursor": cursor})

    assert response.status_code == 200


BIG_NUMBERS = [
    pytest.param(b"100000000000000000000", id="integer-1e20"),
    pytest.param(b"1e20", id="float-1e20"),
    pytest.param(b"-1e19", id="below-int64"),
    pytest.param(b"18446744073709551616", id="just-beyond-uint64"),
    pytest.param(b"1.5e300", id="huge-float"),
]


def doc_with_meta_number(number: bytes) -> bytes:
    head = orjson.dumps(trace_document())[:-1]  # without the closing brace
    return head.replace(b'"meta":{', b'"meta":{"x":[0,{"y":' + number + b"}],", 1) + b"}"


@pytest.mark.parametrize("number", BIG_NUMBERS)
def test_a_number_beyond_64_bits_in_meta_is_refused_naming_its_path(api, number):
    response = api.post("/api/traces", doc_with_meta_number(number), content_type="application/json")

    assert response.status_code == 400, response.content
    assert response.json()["meta.x[1].y"][0].startswith(NOT_64_BITS)
    assert Trace.objects.count() == 0


def test_the_largest_numbers_every_reader_can_take_back_are_stored_and_one_more_is_refused(api):
    # PostgreSQL prints an integral jsonb number as digits (1e19 as 10000000000000000000).
    for number in (b"18446744073709551615", b"-9223372036854775808", b"1e19", b"1e-300"):
        created = api.post("/api/traces", doc_with_meta_number(number), content_type="application/json")
        assert created.status_code == 201, created.content
        detail = api.get(f"/api/traces/{created.json()['id']}")
        assert detail.status_code == 200
        assert detail.json()["meta"]["x"][1]["y"] == orjson.loads(number)
    for number in (b"18446744073709551616", b"-18446744073709551616"):
        refused = api.post("/api/traces", doc_with_meta_number(number), content_type="application/json")
        assert refused.status_code == 400, (number, refused.content)


@pytest.mark.parametrize("number", BIG_NUMBERS)
def test_a_batch_with_a_number_beyond_64_bits_names_the_trace_and_path(api, number):
    body = b"[" + orjson.dumps(trace_document(1)) + b"," + doc_with_meta_number(number) + b"]"

    response = api.post("/api/traces/batch", body, content_type="application/json")

    assert response.status_code == 400, response.content
    [item] = response.json()["items"]
    assert item["index"] == 1
    assert item["errors"]["meta.x[1].y"][0].startswith(NOT_64_BITS)


def test_the_upload_page_refuses_a_number_beyond_64_bits_naming_its_path(csrf_page):
    payload = doc_with_meta_number(b"1e20").decode()

    response = csrf_post(csrf_page, "/traces/upload/", {"payload": payload}, "/traces/upload/")

    assert response.status_code == 400
    assert f"meta.x[1].y: {NOT_64_BITS}" in response.content.decode()
    assert Trace.objects.count() == 0


def test_the_import_command_reports_a_number_beyond_64_bits_as_file_line_and_goes_on(tmp_path: Path):
    path = tmp_path / "traces.jsonl"
    path.write_bytes(
        orjson.dumps(trace_document(1))
        + b"\n"
        + doc_with_meta_number(b"1e20")
        + b"\n"
        + orjson.dumps(trace_document(2, meta={"note": "a\x00"}))
        + b"\n"
        + orjson.dumps(trace_document(3))
        + b"\n"
    )
    err = io.StringIO()

    call_command("import_traces", "--quiet-progress", str(path), stdout=io.StringIO(), stderr=err)

    lines = err.getvalue().splitlines()
    assert any(line.startswith(f"{path}:2: meta.x[1].y: {NOT_64_BITS}") for line in lines), lines
    assert f"{path}:3: meta.note: Must not contain NUL characters." in lines
    assert Trace.objects.count() == 2


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/evaluations?run=abc", "run"),
        ("/api/evaluations?run=-1", "run"),
        ("/api/evaluations?run=99999999999999999999", "run"),
        ("/api/leaderboard?eval_set=quiz&limit=%C2%B2", "limit"),
        ("/api/evaluations/compare?eval_set=quiz&a=%C2%B2&b=1", "a"),
        ("/api/traces/compare?base=1&other=%C2%B2", "other"),
    ],
)
def test_an_invalid_filter_value_is_a_400_not_an_unfiltered_list(api, url, field):
    from runs.tests.eval_support import make_eval_set

    make_eval_set("quiz")

    response = api.get(url)

    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()


def test_evaluations_filter_by_run_and_refuse_a_malformed_one(api, settings, tmp_path):
    from runs.tests.eval_support import hand_evaluation, make_eval_set
    from runs.tests.run_support import build_arithmetic_dataset, finished_run

    settings.RUNS_DIR = tmp_path
    dataset = build_arithmetic_dataset()
    quiz = make_eval_set("quiz")
    mine, other = finished_run(dataset, files=False), finished_run(dataset, files=False)
    wanted = hand_evaluation(mine, quiz, {"q1": True})
    hand_evaluation(other, quiz, {"q1": False})

    response = api.get("/api/evaluations", {"run": mine.pk})

    assert response.status_code == 200
    assert [e["id"] for e in response.json()["results"]] == [wanted.pk]
    assert api.get("/api/evaluations", {"run": f"{mine.pk}x"}).status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "/api/datasets/arith@v%C2%B2",
        "/api/runs?dataset=arith@v%C2%B2",
        "/api/leaderboard?eval_set=quiz&dataset=arith@v%C2%B2",
        "/runs/compare/?id=%C2%B2&id=1",
        "/runs/compare/?id=" + "9" * 5000 + "&id=1",
    ],
)
def test_odd_digits_in_keys_and_ids_answer_without_a_500(api, page, url):
    from runs.tests.eval_support import make_eval_set

    make_eval_set("quiz")
    client: APIClient | Client = api if url.startswith("/api/") else page

    response = client.get(url)

    assert response.status_code in (200, 400, 404), response.content


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_steps": 2_000_000}, "Ensure this value is between 1 and 1,000,000."),
        ({"learning_rate": 2}, "Ensure this value is between 0.0000001 and 1."),
        ({"lora_alpha": 5000}, "Ensure this value is between 0.01 and 4,096."),
        ({"seed": -1}, "Ensure this value is between 0 and 2,147,483,647."),
    ],
)
def test_launch_bounds_are_written_as_people_write_numbers(api, body, message):
    response = api.post("/api/runs", {"dataset": "none@v1", **body}, format="json")

    assert response.status_code == 400
    [field] = body
    assert response.json()[field] == [message]


def test_the_launch_form_shows_its_bounds_as_people_write_them(page):
    html = page.get("/runs/new/").content.decode()

    assert "(0.0000001–1)" in html
    assert "(1–1,000,000)" in html
    assert "e+0" not in html and "e-0" not in html


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": "d", "limit": 0}, "limit", "Ensure this value is between 1 and 1,000,000."),
        ({"name": "d", "description": "x" * 2001}, "description", "Must be text of at most 2,000 characters."),
    ],
)
def test_dataset_build_bounds_are_written_with_thousands_separators(api, body, field, message):
    response = api.post("/api/datasets", body, format="json")

    assert response.status_code == 400
    assert response.json()[field] == [message]


def test_trace_length_limits_are_written_with_thousands_separators(api):
    response = api.post("/api/traces", trace_document(prompt="p" * 50_001), format="json")

    assert response.json()["prompt"] == ["Ensure this field has no more than 50,000 characters."]


def test_an_eval_set_form_post_without_a_file_says_no_file_was_sent(api):
    response = api.post("/api/eval-sets", {"name": "quiz"}, format="multipart")

    assert response.status_code == 400
    assert response.json() == {"file": ["No file was sent."]}


def test_the_trace_upload_page_without_a_file_says_no_file_was_sent(csrf_page):
    response = csrf_post(csrf_page, "/traces/upload/file/", {"source": "x"}, "/traces/upload/")

    assert response.status_code == 400
    assert "No file was sent." in response.content.decode()


def test_the_eval_set_page_without_a_file_says_no_file_was_sent(csrf_page):
    response = csrf_post(csrf_page, "/evaluations/", {"name": "quiz"}, "/evaluations/")

    assert response.status_code == 400
    assert "No file was sent" in response.content.decode()


def test_an_empty_trace_file_says_it_is_empty(csrf_page):
    csrf_page.get("/traces/upload/")
    response = csrf_page.post(
        "/traces/upload/file/",
        {"file": SimpleUploadedFile("t.jsonl", b""), "csrfmiddlewaretoken": csrf_page.cookies["csrftoken"].value},
    )

    assert response.status_code == 400
    assert "The file is empty." in response.content.decode()
