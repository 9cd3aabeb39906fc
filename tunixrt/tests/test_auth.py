"""Authentication everywhere: API answers 401/403 without data, pages redirect to the login."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from traces.models import Trace
from traces.tests.factories import make_trace, trace_document
from tunixrt.models import ApiToken

pytestmark = pytest.mark.django_db

DENIED = (401, 403)


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def trace() -> Trace:
    return make_trace(prompt="secret prompt text")


def test_listing_needs_authentication(anonymous, trace):
    response = anonymous.get("/api/traces")

    assert response.status_code in DENIED
    assert b"secret prompt text" not in response.content
    assert "results" not in response.json()


def test_detail_needs_authentication(anonymous, trace):
    response = anonymous.get(f"/api/traces/{trace.pk}")

    assert response.status_code in DENIED
    assert b"secret prompt text" not in response.content


def test_compare_needs_authentication(anonymous, trace):
    response = anonymous.get("/api/traces/compare", {"base": trace.pk, "other": trace.pk})

    assert response.status_code in DENIED
    assert b"secret prompt text" not in response.content


def test_create_needs_authentication(anonymous):
    response = anonymous.post("/api/traces", trace_document(1), format="json")

    assert response.status_code in DENIED
    assert Trace.objects.count() == 0


def test_batch_needs_authentication(anonymous):
    response = anonymous.post("/api/traces/batch", [trace_document(1)], format="json")

    assert response.status_code in DENIED
    assert Trace.objects.count() == 0


def test_delete_and_score_need_authentication(anonymous, trace):
    assert anonymous.delete(f"/api/traces/{trace.pk}").status_code in DENIED
    assert anonymous.post(f"/api/traces/{trace.pk}/score").status_code in DENIED
    assert Trace.objects.filter(pk=trace.pk).exists()
    assert not trace.scores.exists()


def test_health_needs_authentication(anonymous):
    response = anonymous.get("/api/health")

    assert response.status_code in DENIED
    assert "checks" not in response.json()


def test_a_wrong_token_is_refused(anonymous, trace):
    anonymous.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)

    assert anonymous.get("/api/traces").status_code in DENIED


def test_a_token_authenticates_api_calls(user, trace):
    key = ApiToken.objects.issue(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    listed = client.get("/api/traces")
    created = client.post("/api/traces", trace_document(1), format="json")

    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["results"]] == [trace.pk]
    assert created.status_code == 201
    assert Trace.objects.get(pk=created.json()["id"]).created_by == user


def test_a_token_of_an_inactive_user_is_refused(user, trace):
    key = ApiToken.objects.issue(user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    response = client.get("/api/traces")

    assert response.status_code in DENIED
    assert "inactive" in response.json()["detail"]


def test_token_authentication_loads_the_user_and_token_as_the_orm_does(user):
    from rest_framework.test import APIRequestFactory

    from tunixrt.authentication import TokenAuthentication

    key = ApiToken.objects.issue(user)
    request = APIRequestFactory().get("/api/traces", HTTP_AUTHORIZATION=f"Token {key}")

    authed = TokenAuthentication().authenticate(request)

    assert authed is not None
    authed_user, authed_token = authed

    stored = type(user).objects.get(pk=user.pk)
    for field in type(user)._meta.concrete_fields:
        assert getattr(authed_user, field.attname) == getattr(stored, field.attname), field.name
    assert authed_user.check_password("correct horse battery")
    stored_token = ApiToken.objects.get(user=user)
    assert (authed_token.digest, authed_token.prefix) == (stored_token.digest, stored_token.prefix)
    assert authed_token.created == stored_token.created
    assert authed_token.user is authed_user


def test_a_session_login_authenticates_api_calls(client, user, trace):
    client.post("/accounts/login/", {"username": "alice", "password": "correct horse battery"})

    assert client.get("/api/traces").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/traces/",
        "/traces/upload/",
        "/traces/{pk}/",
        "/traces/{pk}/delete/",
        "/traces/compare/",
        "/account/token",
        "/health/cards",
    ],
)
def test_every_page_redirects_anonymous_users_to_the_login(client, trace, path):
    response = client.get(path.format(pk=trace.pk))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    assert b"secret prompt text" not in response.content


def test_posting_pages_anonymously_changes_nothing(client, trace):
    client.post(f"/traces/{trace.pk}/delete/")
    client.post("/traces/upload/", {"payload": '{"trace_version": "1"}'})

    assert list(Trace.objects.values_list("pk", flat=True)) == [trace.pk]


def test_the_login_page_itself_is_public(client):
    assert client.get("/accounts/login/").status_code == 200


def test_the_token_page_creates_and_rotates_a_token(page, user):
    assert page.get("/account/token").status_code == 200

    first = page.post("/account/token").context["new_key"]
    second = page.post("/account/token").context["new_key"]

    assert first != second
    assert ApiToken.objects.get(user=user).prefix == second[:8]
    shown_later = page.get("/account/token").content.decode()
    assert second not in shown_later
    assert second[:8] in shown_later


def test_the_openapi_schema_needs_authentication(anonymous):
    response = anonymous.get("/api/schema/", {"format": "json"})

    assert response.status_code in DENIED
    assert response["Content-Type"].endswith("json")  # the schema's own media type
    assert "credentials were not provided" in response.json()["detail"]
    assert b"paths" not in response.content


def test_the_swagger_page_sends_anonymous_users_to_the_login(client):
    response = client.get("/api/docs/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/api/docs/"


def test_the_schema_and_swagger_page_serve_a_session(page):
    assert page.get("/api/docs/").status_code == 200
    assert page.get("/api/schema/", {"format": "json"}).json()["openapi"].startswith("3.")


def test_the_schema_serves_a_token(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.objects.issue(user)}")

    assert client.get("/api/schema/", {"format": "json"}).status_code == 200
