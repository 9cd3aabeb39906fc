"""Shared fixtures. Settings come from the environment that bin/run-tests sets."""

from __future__ import annotations

import os

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("SECRET_KEY", "test-secret-key")

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing() -> Iterator[None]:
    """Django's real hasher costs ~0.5 s per user; tests need no strength."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True, scope="session")
def _private_cache() -> Iterator[None]:
    """Rate-limit counters in this process's memory, never in a Redis or folder that other runs share."""
    with override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "KEY_PREFIX": "tunixrt"}}
    ):
        yield


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    """Every test starts with no request counted, so tests that hammer the API are never throttled by others."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="alice", password="correct horse battery")


@pytest.fixture
def api(user: Any) -> APIClient:
    """An API client logged in as a normal user."""
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def page(client: Client, user: Any) -> Client:
    """A browser-like Django test client with a logged-in session."""
    client.force_login(user)
    return client
