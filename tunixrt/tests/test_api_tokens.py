"""API tokens are stored as digests, shown once, replaced on demand, and plaintext ones are migrated."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import secrets

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tunixrt.models import ApiToken
from tunixrt.roles import Role, grant

pytestmark = pytest.mark.django_db


def api_as(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def database_dump() -> str:
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


@pytest.fixture
def csrf_page(user) -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/account/token")
    return client, client.cookies["csrftoken"].value


def test_a_token_from_the_page_is_shown_once_works_and_is_not_stored(csrf_page, user):
    client, csrf = csrf_page

    created = client.post("/account/token", HTTP_X_CSRFTOKEN=csrf)
    key = created.context["new_key"]

    assert created.status_code == 200
    assert f"Authorization: Token {key}" in created.content.decode()
    assert "no-store" in created["Cache-Control"]
    assert api_as(key).get("/api/traces").status_code == 200
    later = client.get("/account/token").content.decode()
    assert key not in later
    assert key[:8] in later
    assert key not in database_dump()  # sessions and messages included
    assert ApiToken.objects.get(user=user).digest == hashlib.sha256(key.encode()).hexdigest()


def test_a_new_token_revokes_the_old_one(csrf_page):
    client, csrf = csrf_page
    old = client.post("/account/token", HTTP_X_CSRFTOKEN=csrf).context["new_key"]

    new = client.post("/account/token", HTTP_X_CSRFTOKEN=csrf).context["new_key"]

    assert api_as(old).get("/api/traces").status_code == 403
    assert api_as(new).get("/api/traces").status_code == 200


def test_the_page_refuses_a_post_without_the_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    assert client.post("/account/token").status_code == 403
    assert not ApiToken.objects.exists()


def test_a_wrong_token_is_refused(user):
    ApiToken.objects.issue(user)

    response = api_as(secrets.token_hex(20)).get("/api/traces")

    assert response.status_code == 403
    assert response.json() == {"detail": "Invalid token."}


def test_the_digest_itself_is_not_a_token(user):
    ApiToken.objects.issue(user)

    assert api_as(ApiToken.objects.get(user=user).digest).get("/api/traces").status_code == 403


def test_a_token_of_an_inactive_user_is_refused(user):
    key = ApiToken.objects.issue(user)
    user.is_active = False
    user.save(update_fields=["is_active"])

    response = api_as(key).get("/api/traces")

    assert response.status_code == 403
    assert "inactive" in response.json()["detail"]


def test_drf_create_token_prints_a_working_token_that_is_not_stored(user):
    out = io.StringIO()

    call_command("drf_create_token", "alice", stdout=out)

    words = out.getvalue().split()
    assert words[:2] == ["Generated", "token"]
    key = words[2]
    assert len(key) == 40
    assert api_as(key).get("/api/traces").status_code == 200
    assert key not in database_dump()


def test_drf_create_token_will_not_silently_replace_a_token(user):
    key = ApiToken.objects.issue(user)

    with pytest.raises(CommandError, match="--reset"):
        call_command("drf_create_token", "alice", stdout=io.StringIO())

    assert api_as(key).get("/api/traces").status_code == 200


def test_drf_create_token_reset_replaces_the_token(user):
    old = ApiToken.objects.issue(user)
    out = io.StringIO()

    call_command("drf_create_token", "alice", "--reset", stdout=out)

    assert api_as(old).get("/api/traces").status_code == 403
    assert api_as(out.getvalue().split()[2]).get("/api/traces").status_code == 200


def test_drf_create_token_names_an_unknown_user():
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("drf_create_token", "nobody")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")
def test_the_token_lookup_is_a_prepared_statement_on_postgresql(user):
    key = ApiToken.objects.issue(user)
    client = api_as(key)

    answers = [client.get("/api/traces").status_code for _ in range(3)]

    assert answers == [200, 200, 200]
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert [s for s in prepared if '"tunixrt_apitoken"' in s and '"digest"' in s]


@pytest.mark.django_db(transaction=True)
def test_plaintext_tokens_are_migrated_to_digests_and_keep_working(django_user_model):
    """A database from before: rest_framework.authtoken's table, keys in plaintext."""
    owner = django_user_model.objects.create_user(username="carol", password="x")
    key = secrets.token_hex(20)
    created = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    executor = MigrationExecutor(connection)
    executor.migrate([("tunixrt", "0001_api_token")])
    user_table = django_user_model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TABLE "authtoken_token" ("key" varchar(40) NOT NULL PRIMARY KEY, '
            f'"created" {connection.data_types["DateTimeField"]} NOT NULL, '
            f'"user_id" integer NOT NULL UNIQUE REFERENCES "{user_table}" ("id"))'
        )
        cursor.execute(
            'INSERT INTO "authtoken_token" ("key", "created", "user_id") VALUES (%s, %s, %s)',
            [key, connection.ops.adapt_datetimefield_value(created), owner.pk],
        )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert "authtoken_token" not in connection.introspection.table_names()
    token = ApiToken.objects.get(user=owner)
    assert (token.prefix, token.created) == (key[:8], created)
    assert key not in database_dump()
    response = api_as(key).get("/api/traces")
    assert response.status_code == 200


def _capture(client: APIClient, n: int) -> int:
    steps = [{"i": 0, "type": "t", "content": "c"}]
    doc = {"trace_version": "1.0", "prompt": f"p{n}", "steps": steps, "final_answer": "a"}
    return client.post("/api/traces", doc, format="json").status_code


def test_a_token_capture_reads_the_role_with_the_token_in_one_query(user):
    client = api_as(ApiToken.objects.issue(user))
    with CaptureQueriesContext(connection) as queries:
        assert _capture(client, 1) == 201
    # Only the token lookup reads the groups (on PostgreSQL it runs as a prepared statement,
    # outside Django's query log): no separate role query.
    role_queries = [q["sql"] for q in queries.captured_queries if "auth_group" in q["sql"] and "digest" not in q["sql"]]
    assert role_queries == []


def test_the_role_read_with_the_token_is_the_users_current_role(user, viewer):
    assert _capture(api_as(ApiToken.objects.issue(viewer)), 1) == 403
    client = api_as(ApiToken.objects.issue(user))
    assert _capture(client, 2) == 201
    grant(user, Role.VIEWER)  # takes effect on the next request
    assert _capture(client, 3) == 403
    grant(user, Role.MAINTAINER)
    assert _capture(client, 4) == 201


def test_a_token_is_looked_up_once_then_reused_for_the_cache_time(user, settings, monkeypatch):
    from tunixrt import authentication

    settings.API_TOKEN_CACHE_SECONDS = 5.0
    lookups = []
    fetch = authentication.TokenAuthentication._fetch

    def counting(*args):
        lookups.append(args[-1])
        return fetch(*args)

    monkeypatch.setattr(authentication.TokenAuthentication, "_fetch", staticmethod(counting))
    client = api_as(ApiToken.objects.issue(user))

    assert [client.get("/api/traces").status_code for _ in range(3)] == [200, 200, 200]
    assert len(lookups) == 1
    # Past the cache time the token is looked up again.
    now = authentication.clock()
    monkeypatch.setattr(authentication, "clock", lambda: now + 6)
    assert client.get("/api/traces").status_code == 200
    assert len(lookups) == 2


def test_changes_made_here_apply_to_the_next_request_despite_the_cache(user, settings):
    settings.API_TOKEN_CACHE_SECONDS = 60.0
    old = ApiToken.objects.issue(user)
    assert api_as(old).get("/api/traces").status_code == 200
    new = ApiToken.objects.issue(user)  # revokes the old one
    assert api_as(old).get("/api/traces").status_code == 403
    assert api_as(new).get("/api/traces").status_code == 200

    assert _capture(api_as(new), 10) == 201
    grant(user, Role.VIEWER)
    assert _capture(api_as(new), 11) == 403
    grant(user, Role.MEMBER)

    user.is_active = False
    user.save(update_fields=["is_active"])
    assert api_as(new).get("/api/traces").status_code == 403
    user.is_active = True
    user.save(update_fields=["is_active"])
    assert api_as(new).get("/api/traces").status_code == 200

    ApiToken.objects.filter(user=user).delete()
    assert api_as(new).get("/api/traces").status_code == 403


def test_a_change_made_elsewhere_applies_within_the_cache_time(user, settings, monkeypatch):
    """Another process's change (here: a write no signal reports) reaches this one when the row expires."""
    from tunixrt import authentication

    settings.API_TOKEN_CACHE_SECONDS = 5.0
    key = ApiToken.objects.issue(user)
    assert api_as(key).get("/api/traces").status_code == 200
    type(user).objects.filter(pk=user.pk).update(is_active=False)

    now = authentication.clock()
    monkeypatch.setattr(authentication, "clock", lambda: now + 5.5)
    assert api_as(key).get("/api/traces").status_code == 403


def test_with_no_cache_time_every_request_looks_the_token_up(user, settings):
    settings.API_TOKEN_CACHE_SECONDS = 0
    key = ApiToken.objects.issue(user)
    assert api_as(key).get("/api/traces").status_code == 200
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    assert api_as(key).get("/api/traces").status_code == 403
