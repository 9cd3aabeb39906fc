"""Captures from a logged-in browser session (the browsable API, Swagger's "Try it out", curl with cookie + CSRF)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from traces.models import Trace
from traces.tests.factories import trace_document

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(user: Any) -> tuple[Client, str]:
    """A session client that enforces CSRF, with the token a browser would send back."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/api/traces")  # any page sets the csrftoken cookie
    token = client.cookies["csrftoken"].value if "csrftoken" in client.cookies else ""
    if not token:
        client.get("/traces/")
        token = client.cookies["csrftoken"].value
    return client, token


def test_a_session_with_its_csrf_token_captures_one_trace(session):
    client, token = session
    response = client.post(
        "/api/traces", json.dumps(trace_document(1)), content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 201, response.content
    assert Trace.objects.filter(pk=response.json()["id"]).exists()


def test_a_session_with_its_csrf_token_captures_a_batch(session):
    client, token = session
    body = json.dumps([trace_document(1), trace_document(2)])
    response = client.post("/api/traces/batch", body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content
    assert Trace.objects.count() == 2


def test_a_session_without_the_csrf_token_is_refused_with_json(session):
    client, _ = session
    response = client.post("/api/traces", json.dumps(trace_document(1)), content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not Trace.objects.exists()


def test_an_oversized_session_capture_is_a_413_not_a_500(session, settings):
    client, token = session
    settings.TRACE_MAX_BYTES = 1024
    doc = trace_document(1)
    doc["prompt"] = "x" * 2000
    response = client.post("/api/traces", json.dumps(doc), content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 413
    assert not Trace.objects.exists()
