"""Every error the API gives is JSON: unexpected exceptions, rejected hosts, over-long URLs, with DEBUG on and off."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.test import override_settings

from tunixrt import views

pytestmark = pytest.mark.django_db

DEBUG_ON_AND_OFF = pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])


def boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("secret internals")


@DEBUG_ON_AND_OFF
def test_an_unexpected_exception_in_an_api_view_is_a_logged_json_500(
    token_client, session_client, monkeypatch, caplog, debug
):
    monkeypatch.setattr(views, "health_report", boom)

    with override_settings(DEBUG=debug), caplog.at_level(logging.ERROR, logger="django.request"):
        for client in (token_client, session_client):
            response = client.get("/api/health")
            assert response.status_code == 500
            assert response["Content-Type"] == "application/json"
            assert response.json() == {"detail": "Internal server error."}
            assert b"secret internals" not in response.content

    logged = [r for r in caplog.records if r.name == "django.request" and r.levelno == logging.ERROR]
    assert logged
    assert logged[0].exc_info is not None
    assert "secret internals" in str(logged[0].exc_info[1])


@DEBUG_ON_AND_OFF
def test_an_exception_in_a_middleware_under_api_is_a_json_500_and_pages_keep_django_s_page(
    token_client, session_client, monkeypatch, debug
):
    monkeypatch.setattr(XFrameOptionsMiddleware, "process_response", boom)

    with override_settings(DEBUG=debug):
        response = token_client.get("/api/traces")
        page = session_client.get("/traces/")

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error."}
    assert page.status_code == 500
    assert page["Content-Type"].startswith("text/html")


@DEBUG_ON_AND_OFF
def test_a_rejected_host_is_a_json_400_under_api(token_client, session_client, debug):
    with override_settings(DEBUG=debug):
        response = token_client.get("/api/traces", HTTP_HOST="evil.example")
        page = session_client.get("/traces/", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Invalid Host header."}
    assert page.status_code == 400
    assert page["Content-Type"].startswith("text/html")


@DEBUG_ON_AND_OFF
def test_an_over_long_url_is_a_json_414_under_api(token_client, settings, debug):
    settings.DEBUG = debug
    settings.URL_MAX_LENGTH = 2000
    at_the_limit = "x" * (2000 - len("/api/traces?pad="))

    response = token_client.get("/api/traces", {"pad": at_the_limit + "x"})

    assert response.status_code == 414
    assert response.json() == {"detail": "The URL is longer than 2,000 characters."}
    assert token_client.get("/api/traces", {"pad": at_the_limit}).status_code == 200


def test_an_over_long_page_url_is_a_414(session_client, settings):
    settings.URL_MAX_LENGTH = 2000

    response = session_client.get("/traces/", {"pad": "x" * 2000})

    assert response.status_code == 414
    assert b"The URL is longer than 2,000 characters." in response.content
