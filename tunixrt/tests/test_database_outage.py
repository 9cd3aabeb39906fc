"""Database outages: checked pooled connections, JSON/HTML 503s while it is down, recovery by itself.

On PostgreSQL a TCP proxy sits between Django and the server: `cut()` kills every
pooled connection (a restart that has finished), `refuse()` keeps it down. On
SQLite the outage is a cursor that cannot be opened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import close_old_connections, connection
from django.test import override_settings

from traces.tests.factories import trace_document
from tunixrt.tests.tcpproxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the proxy sits between Django and PostgreSQL's pool"
)
DOWN = "The database is unavailable. Try again in a few seconds."


def served(call: Any, path: str, **kwargs: Any) -> Any:
    """A request as a server handles it: Django hands its connection back to the pool afterwards.

    (The test client skips that, so that a test's connection outlives its requests.)
    """
    response = call(path, **kwargs)
    close_old_connections()
    return response


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """Django's connections (and a fresh pool of 4) go through a TCP proxy to PostgreSQL."""
    postgresql: Any = connection  # the PostgreSQL wrapper, with its pool
    settings_dict = connection.settings_dict
    saved = {key: settings_dict[key] for key in ("HOST", "PORT", "OPTIONS")}
    proxy = TcpProxy(settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"] or 5432))
    pool = {**settings_dict["OPTIONS"]["pool"], "min_size": 4, "timeout": 2.0}
    connection.close()
    postgresql.close_pool()
    settings_dict.update(HOST="127.0.0.1", PORT=str(proxy.port), OPTIONS={**saved["OPTIONS"], "pool": pool})
    try:
        yield proxy
    finally:
        connection.close()
        postgresql.close_pool()
        settings_dict.update(saved)
        proxy.close()


def pool() -> Any:
    return connection.pool  # type: ignore[attr-defined]  # PostgreSQL's wrapper has one


def fill_pool() -> None:
    connection.ensure_connection()
    pool().wait(timeout=10)  # min_size connections opened, all through the proxy


@postgresql_only
def test_every_request_succeeds_after_all_pooled_connections_die(proxy, token_client, session_client):
    assert served(token_client.get, "/api/traces").status_code == 200
    fill_pool()
    connection.close()  # back to the pool, as at the end of a request
    assert pool().get_stats()["pool_size"] >= 4

    proxy.cut()  # PostgreSQL restarted: every pooled connection is dead, new ones work

    statuses = [served(token_client.get, "/api/traces").status_code for _ in range(10)]
    statuses += [served(session_client.get, "/api/traces").status_code for _ in range(10)]
    statuses += [served(session_client.get, "/traces/").status_code for _ in range(10)]
    assert statuses == [200] * 30


@postgresql_only
def test_while_postgresql_is_down_the_api_answers_json_503_and_recovers_by_itself(
    proxy, token_client, session_client, settings
):
    settings.API_TOKEN_CACHE_SECONDS = 60  # the token looked up below stays known through the outage
    assert served(token_client.get, "/api/traces").status_code == 200
    proxy.refuse()

    for client in (token_client, session_client):
        response = served(client.get, "/api/traces")
        assert response.status_code == 503
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"detail": DOWN}
        assert response["Retry-After"] == "5"
    posted = served(token_client.post, "/api/traces", data=trace_document(1), format="json")
    assert (posted.status_code, posted.json()) == (503, {"detail": DOWN})
    # A capture wrong in itself is refused for its fields: saying so needs no database.
    invalid = served(token_client.post, "/api/traces", data={"prompt": "p"}, format="json")
    assert invalid.status_code == 400
    assert "steps" in invalid.json()

    proxy.resume()

    assert served(token_client.get, "/api/traces").status_code == 200
    assert served(session_client.get, "/api/traces").status_code == 200
    assert served(session_client.get, "/traces/").status_code == 200


@postgresql_only
def test_while_postgresql_is_down_pages_answer_a_friendly_503(proxy, session_client):
    proxy.refuse()

    response = served(session_client.get, "/traces/")

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == "5"
    assert b"The database is unavailable" in response.content


@postgresql_only
def test_while_postgresql_is_down_health_reports_it_down_and_still_checks_the_broker(proxy, token_client):
    proxy.refuse()

    response = served(token_client.get, "/api/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["checks"]["database"]["status"] == "down"
    assert body["checks"]["broker"]["status"] == "ok"
    # The caller could not be authenticated: statuses only, no versions, hosts or errors.
    assert "error" not in body["checks"]["database"]
    assert "versions" not in body["checks"]["tunix"]


@pytest.fixture
def sqlite_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite cannot open its file: every new cursor fails as the driver would."""
    if connection.vendor != "sqlite":
        pytest.skip("the PostgreSQL outage goes through the proxy")

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        with connection.wrap_database_errors:
            raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(connection, "create_cursor", unavailable)


@pytest.mark.parametrize("debug", [True, False])
def test_sqlite_outage_is_a_json_503_for_token_and_session_callers(token_client, session_client, sqlite_down, debug):
    with override_settings(DEBUG=debug):
        for client in (token_client, session_client):
            response = client.get("/api/traces")
            assert response.status_code == 503
            assert response.json() == {"detail": DOWN}
            assert response["Retry-After"] == "5"


@pytest.mark.parametrize("debug", [True, False])
def test_sqlite_outage_is_a_503_page(session_client, sqlite_down, debug):
    with override_settings(DEBUG=debug):
        response = session_client.get("/traces/")

    assert response.status_code == 503
    assert b"The database is unavailable" in response.content


def test_sqlite_outage_shows_in_health(token_client, sqlite_down):
    response = token_client.get("/api/health")

    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"]["status"] == "down"
    assert body["checks"]["broker"]["status"] == "ok"
    assert body["checks"]["workers"]["status"] == "unknown"
