"""Clients for the error and outage tests: a server error comes back as a response, not an exception."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tunixrt.models import ApiToken


@pytest.fixture
def token(user: Any) -> str:
    return ApiToken.objects.issue(user)


@pytest.fixture
def token_client(token: str) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def session_client(user: Any) -> Client:
    """A logged-in browser (a session in the database), CSRF enforced; errors come back as responses."""
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.force_login(user)
    return client
