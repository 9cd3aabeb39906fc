"""GET /api/health: database, broker, workers, Tunix versions and the optional RediAI check."""

from __future__ import annotations

import datetime as dt
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from tunixrt import health
from tunixrt.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db

URL = "/api/health"
CLOSED_PORT = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _no_http_proxy(monkeypatch):
    """The RediAI probes here go to 127.0.0.1; a proxy from the environment must not answer them."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def urlopen_calls(monkeypatch):
    """Counts the real HTTP requests the RediAI check makes."""
    calls: list[str] = []
    real = urllib.request.urlopen

    def counting(url, *args, **kwargs):
        calls.append(url)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", counting)
    return calls


@pytest.fixture
def live_worker():
    return WorkerHeartbeat.objects.create(hostname="celery@live", concurrency=2, last_seen=timezone.now())


@pytest.fixture
def rediai_server() -> Iterator[tuple[str, list[int]]]:
    """A local RediAI stand-in; append an HTTP status to the list to set its next answers."""
    answers = [200]
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(answers[-1])
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", answers
    finally:
        server.shutdown()
        server.server_close()
        assert set(paths) <= {"/health", "/custom/health"}


def checks(api):
    response = api.get(URL)
    assert response.status_code in (200, 503), response.content
    return response.json()["checks"]


def test_health_reports_every_part(api, live_worker, settings):
    settings.REDIAI_MODE = "off"

    response = api.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert set(body["checks"]) == {"database", "broker", "workers", "search_index", "tunix", "rediai"}
    assert body["checks"]["search_index"]["status"] == "ok"
    assert body["checks"]["search_index"]["pending"] == 0
    assert body["status"] == "ok"


def test_database_is_ok(api):
    database = checks(api)["database"]

    assert database["status"] == "ok"
    assert database["vendor"] == connection.vendor
    assert database["latency_ms"] >= 0


def test_broker_is_ok_on_the_configured_transport(api, settings):
    broker = checks(api)["broker"]

    assert broker["status"] == "ok", broker
    assert broker["transport"] == settings.CELERY_BROKER_URL.split("://")[0]
    assert broker["transport"] == ("redis" if connection.vendor == "postgresql" else "filesystem")


def test_an_unreachable_broker_makes_the_service_down(api, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 1}
    settings.CELERY_BROKER_CONNECTION_TIMEOUT = 1.0

    response = api.get(URL)

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["checks"]["broker"]["status"] == "down"
    assert body["checks"]["broker"]["transport"] == "redis"
    assert body["checks"]["broker"]["error"]
    # A refused connection is reported at once, not after kombu's default 2 s back-off.
    assert body["checks"]["broker"]["latency_ms"] < 1500


def test_fresh_workers_are_counted_and_stale_ones_are_not(api, live_worker, settings):
    WorkerHeartbeat.objects.create(
        hostname="celery@second", last_seen=timezone.now() - dt.timedelta(seconds=5)
    )
    WorkerHeartbeat.objects.create(
        hostname="celery@dead",
        last_seen=timezone.now() - dt.timedelta(seconds=settings.WORKER_STALE_SECONDS + 5),
    )

    workers = checks(api)["workers"]

    assert workers["status"] == "ok"
    assert workers["count"] == 2
    assert [w["hostname"] for w in workers["workers"]] == ["celery@live", "celery@second"]
    assert workers["workers"][0]["concurrency"] == 2


def test_no_live_workers_degrades_the_service(api, settings):
    settings.REDIAI_MODE = "off"
    WorkerHeartbeat.objects.create(hostname="celery@dead", last_seen=timezone.now() - dt.timedelta(hours=1))

    response = api.get(URL)

    assert response.status_code == 200
    body = response.json()
    workers = body["checks"]["workers"]
    assert (workers["status"], workers["count"], workers["workers"]) == ("down", 0, [])
    assert body["status"] == "degraded"


def test_tunix_versions_are_listed(api):
    tunix = checks(api)["tunix"]

    assert tunix["status"] in ("ok", "not installed")
    assert set(tunix["versions"]) == set(health.TRAINING_PACKAGES)
    assert all(isinstance(v, str) and v for v in tunix["versions"].values())
    installed = "not installed" not in (tunix["versions"]["google-tunix"], tunix["versions"]["jax"])
    assert tunix["status"] == ("ok" if installed else "not installed")


def test_rediai_off_is_reported_without_a_request(api, settings, urlopen_calls):
    settings.REDIAI_MODE = "off"

    rediai = checks(api)["rediai"]

    assert rediai["status"] == "off"
    assert rediai["mode"] == "off"
    assert urlopen_calls == []


def test_rediai_mock_is_always_healthy(api, settings, urlopen_calls, live_worker):
    settings.REDIAI_MODE = "mock"
    settings.REDIAI_BASE_URL = CLOSED_PORT

    response = api.get(URL)

    assert response.json()["checks"]["rediai"] == {"status": "ok", "mode": "mock"}
    assert response.json()["status"] == "ok"
    assert urlopen_calls == []


def test_rediai_real_on_a_closed_port_is_down_with_the_error(api, settings, urlopen_calls, live_worker):
    settings.REDIAI_MODE = "real"
    settings.REDIAI_BASE_URL = CLOSED_PORT
    settings.REDIAI_HEALTH_CACHE_TTL_SECONDS = 30

    response = api.get(URL)

    body = response.json()
    rediai = body["checks"]["rediai"]
    assert response.status_code == 200
    assert rediai["status"] == "down"
    assert rediai["mode"] == "real"
    assert rediai["url"] == CLOSED_PORT + "/health"
    assert "refused" in rediai["error"].lower() or "URLError" in rediai["error"]
    assert rediai["cached"] is False
    assert body["status"] == "degraded"
    assert urlopen_calls == [CLOSED_PORT + "/health"]


def test_rediai_real_is_cached_within_the_ttl(api, settings, urlopen_calls):
    settings.REDIAI_MODE = "real"
    settings.REDIAI_BASE_URL = CLOSED_PORT
    settings.REDIAI_HEALTH_CACHE_TTL_SECONDS = 30

    first = checks(api)["rediai"]
    second = checks(api)["rediai"]

    assert first["cached"] is False
    assert second["cached"] is True
    assert second["status"] == "down"
    assert second["error"] == first["error"]
    assert second["checked_at"] == first["checked_at"]
    assert len(urlopen_calls) == 1


def test_rediai_real_with_a_zero_ttl_probes_every_time(api, settings, urlopen_calls):
    settings.REDIAI_MODE = "real"
    settings.REDIAI_BASE_URL = CLOSED_PORT
    settings.REDIAI_HEALTH_CACHE_TTL_SECONDS = 0

    first = checks(api)["rediai"]
    second = checks(api)["rediai"]

    assert first["cached"] is second["cached"] is False
    assert len(urlopen_calls) == 2


def test_rediai_cache_is_per_url(api, settings, urlopen_calls):
    settings.REDIAI_MODE = "real"
    settings.REDIAI_BASE_URL = CLOSED_PORT
    checks(api)

    settings.REDIAI_BASE_URL = "http://127.0.0.1:1"
    rediai = checks(api)["rediai"]

    assert rediai["cached"] is False
    assert len(urlopen_calls) == 2


def test_the_dashboard_health_cards_render(page, settings, live_worker):
    settings.REDIAI_MODE = "mock"

    response = page.get("/health/cards")

    assert response.status_code == 200
    text = response.content.decode()
    assert "<html" not in text
    for part in ("Database", "Broker", "Workers", "Tunix", "RediAI", "celery@live"):
        assert part in text


def test_rediai_real_answering_200_is_ok(api, settings, rediai_server, live_worker):
    url, _ = rediai_server
    settings.REDIAI_MODE = "real"
    settings.REDIAI_BASE_URL = url

    response = api.get(URL)

    rediai = response.json()["checks"]["rediai"]
    assert rediai["status"] == "ok"
    assert rediai["http_status"] == 200
    assert rediai["url"] == url + "/health"
    assert response.json()["status"] == "ok"


def test_rediai_real_answering_an_error_is_down(api, settings, rediai_server):
    url, answers = rediai_server
    answers.append(503)
    settings.REDIAI_MODE = "real"
    settings.REDIAI_BASE_URL = url
    settings.REDIAI_HEALTH_PATH = "/custom/health"

    rediai = checks(api)["rediai"]

    assert rediai["status"] == "down"
    assert rediai["error"] == "HTTP 503"
    assert rediai["url"] == url + "/custom/health"
