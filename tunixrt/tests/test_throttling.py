"""API rate limits: 429 with Retry-After and a JSON detail, per user, per anonymous address, per token issue."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from rest_framework.test import APIClient

from traces.models import Trace
from traces.tests.factories import trace_document
from tunixrt import throttling
from tunixrt.models import ApiToken

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def rates(settings):
    """Set throttle rates for one test: rates(user="2/min")."""

    def set_rates(**scopes: str | None) -> None:
        rest = dict(settings.REST_FRAMEWORK)
        rest["DEFAULT_THROTTLE_RATES"] = {**rest["DEFAULT_THROTTLE_RATES"], **scopes}
        settings.REST_FRAMEWORK = rest

    return set_rates


@pytest.fixture
def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.objects.issue(user)}")
    return client


@pytest.fixture
def csrf_client(user) -> tuple[Client, str]:
    """A browser-like client: logged in by session, CSRF checks on, with the token a page gave it."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/account/token")
    return client, client.cookies["csrftoken"].value


def assert_throttled(response: Any) -> None:
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response["Content-Type"] == "application/json"
    assert "throttled" in response.json()["detail"]


def test_token_calls_over_the_rate_get_429_with_retry_after(rates, token_client):
    rates(user="3/min")

    answers = [token_client.get("/api/traces") for _ in range(4)]

    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    assert_throttled(answers[3])


def test_session_calls_over_the_rate_get_429(rates, csrf_client):
    rates(user="2/min")
    client, _ = csrf_client

    answers = [client.get("/api/traces") for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert_throttled(answers[2])


def test_a_throttled_capture_stores_nothing(rates, token_client):
    rates(user="2/min")

    answers = [token_client.post("/api/traces", trace_document(n), format="json") for n in range(3)]

    assert [a.status_code for a in answers] == [201, 201, 429]
    assert Trace.objects.count() == 2


def test_the_user_limit_is_per_user(rates, token_client, django_user_model):
    rates(user="1/min")
    bob = django_user_model.objects.create_user(username="bob", password="x")
    bob_client = APIClient()
    bob_client.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.objects.issue(bob)}")

    token_client.get("/api/traces")

    assert token_client.get("/api/traces").status_code == 429
    assert bob_client.get("/api/traces").status_code == 200


def test_anonymous_calls_over_the_rate_get_429_instead_of_403(rates):
    rates(anon="2/min")
    client = APIClient()

    answers = [client.get("/api/traces") for _ in range(3)]

    assert [a.status_code for a in answers[:2]] == [403, 403]
    assert_throttled(answers[2])


def test_wrong_tokens_count_against_the_address(rates):
    rates(anon="2/min")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)

    answers = [client.get("/api/traces") for _ in range(3)]

    assert [a.status_code for a in answers[:2]] == [403, 403]
    assert_throttled(answers[2])


def test_the_anonymous_limit_is_per_address_and_spares_valid_tokens(rates, token_client):
    rates(anon="1/min")
    client = APIClient()
    client.get("/api/traces", REMOTE_ADDR="10.0.0.1")

    assert client.get("/api/traces", REMOTE_ADDR="10.0.0.1").status_code == 429
    assert client.get("/api/traces", REMOTE_ADDR="10.0.0.2").status_code == 403
    assert token_client.get("/api/traces", REMOTE_ADDR="10.0.0.1").status_code == 200


def test_a_forged_forwarded_for_does_not_dodge_the_limit(rates):
    rates(anon="1/min")
    client = APIClient()
    client.get("/api/traces", HTTP_X_FORWARDED_FOR="192.0.2.1")

    assert client.get("/api/traces", HTTP_X_FORWARDED_FOR="192.0.2.2").status_code == 429


def test_behind_a_trusted_proxy_clients_are_told_apart_by_forwarded_for(rates, settings):
    rates(anon="1/min")
    settings.NUM_PROXIES = 1
    client = APIClient()
    client.get("/api/traces", HTTP_X_FORWARDED_FOR="forged, 192.0.2.1")

    assert client.get("/api/traces", HTTP_X_FORWARDED_FOR="192.0.2.1").status_code == 429
    assert client.get("/api/traces", HTTP_X_FORWARDED_FOR="192.0.2.1, 192.0.2.2").status_code == 403


def test_issuing_tokens_on_the_page_has_its_own_stricter_limit(rates, csrf_client, user):
    rates(token="2/hour")
    client, csrf = csrf_client
    client.post("/account/token", HTTP_X_CSRFTOKEN=csrf)
    kept = client.post("/account/token", HTTP_X_CSRFTOKEN=csrf).context["new_key"]

    refused = client.post("/account/token", HTTP_X_CSRFTOKEN=csrf)

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) <= 3600
    assert "Too many new tokens" in refused.content.decode()
    assert "new_key" not in refused.context
    assert ApiToken.objects.get(user=user).prefix == kept[:8]


def test_the_default_rates_leave_room_for_capture_clients():
    """bench/bench_api.py: ~400 single POSTs/s from one token; anonymous calls only ever get 403."""
    count, duration = throttling.UserRateThrottle().parse_rate(django_settings.API_THROTTLE_USER)
    anonymous, _ = throttling.AnonRateThrottle().parse_rate(django_settings.API_THROTTLE_ANON)

    assert count is not None and duration is not None
    assert count / duration >= 2 * 400
    assert anonymous is not None and anonymous >= 60


def _cache_backends() -> list[Any]:
    backends = [pytest.param("file", id="file")]
    broker = os.environ.get("CELERY_BROKER_URL", "")
    backends.append(
        pytest.param(
            broker,
            id="redis",
            marks=pytest.mark.skipif(not broker.startswith("redis://"), reason="the broker is not Redis"),
        )
    )
    return backends


@pytest.mark.parametrize("backend", _cache_backends())
def test_limits_count_in_the_shared_caches(rates, settings, tmp_path, token_client, backend):
    if backend == "file":
        cache = {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(tmp_path)}
    else:
        cache = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": backend}
    # A prefix of its own: this Redis database is shared with other runs.
    settings.CACHES = {"default": {**cache, "KEY_PREFIX": f"test-throttle-{os.getpid()}-{tmp_path.name}"}}
    rates(user="2/min")

    answers = [token_client.get("/api/traces").status_code for _ in range(3)]

    assert answers == [200, 200, 429]


def test_the_api_keeps_answering_when_the_cache_is_down(rates, settings, token_client, monkeypatch):
    monkeypatch.setattr(throttling, "_cache_down_until", 0.0)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    rates(user="1/min")

    answers = [token_client.get("/api/traces").status_code for _ in range(3)]

    assert answers == [200, 200, 200]


CACHES_OF = r"""
import json, django
django.setup()
from django.conf import settings
print(json.dumps(settings.CACHES["default"]))
"""


@pytest.mark.parametrize(
    ("broker", "cache_url", "backend", "location"),
    [
        ("filesystem://", "", "django.core.cache.backends.filebased.FileBasedCache", "{var}/cache"),
        ("redis://127.0.0.1:6379/3", "", "django.core.cache.backends.redis.RedisCache", "redis://127.0.0.1:6379/3"),
        ("filesystem://", "redis://cache:6379/1", "django.core.cache.backends.redis.RedisCache", "redis://cache:6379/1"),
    ],
    ids=["embedded", "redis-broker", "cache-url"],
)
def test_every_web_worker_shares_one_cache(tmp_path, broker, cache_url, backend, location):
    """Never the per-process local memory, where each web worker would count on its own."""
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"CACHE_URL", "CELERY_BROKER_URL"}},
        "DJANGO_SETTINGS_MODULE": "tunixrt.settings",
        "TUNIXRT_ENV_FILE": "/dev/null",
        "TUNIXRT_VAR_DIR": str(tmp_path),
        "CELERY_BROKER_URL": broker,
        "CACHE_URL": cache_url,
    }
    out = subprocess.run(
        [sys.executable, "-c", CACHES_OF], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60
    )

    cache = json.loads(out.stdout.strip().splitlines()[-1])
    assert cache["BACKEND"] == backend
    assert cache["LOCATION"] == location.format(var=tmp_path)


def test_high_limits_are_counted_in_batches_and_still_hold(rates, token_client, user, monkeypatch):
    """A limit of 300 with batches of limit // 100: the cache hears of every third request; 429 past 300."""
    from django.core.cache import cache

    monkeypatch.setattr(throttling, "BATCH_DIVISOR", 100)
    monkeypatch.setattr(throttling.FixedWindowRateThrottle, "timer", staticmethod(lambda: 1_000_000.0))  # one window
    rates(user="300/min")

    statuses = [token_client.get("/api/traces?limit=1").status_code for _ in range(303)]

    assert statuses[:300] == [200] * 300
    assert statuses[300:] == [429] * 3
    told = cache.get(f"throttle:user:{user.pk}:{int(1_000_000.0 // 60)}")
    assert 301 <= told <= 303  # what the process has not told yet is at most one batch
