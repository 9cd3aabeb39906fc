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

    from traces.api.reads import forget_first_pages
    from tunixrt import throttling
    from tunixrt.authentication import forget_tokens

    cache.clear()
    throttling.forget_batches()
    forget_tokens()  # rows of users a rolled-back test created
    forget_first_pages()


def _user_with_role(model: Any, username: str, role: str) -> Any:
    # Imported here: this module loads before Django is set up (see the environment above).
    from tunixrt.roles import ROLE_GROUPS, grant

    user = model.objects.create_user(username=username, password="correct horse battery")
    grant(user, next(r for r, name in ROLE_GROUPS.items() if name == role))
    return user


def _api_client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _page_client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def user(django_user_model: Any) -> Any:
    """Alice, a member: creates, launches and evaluates; changes her own work."""
    return _user_with_role(django_user_model, "alice", "member")


@pytest.fixture
def member(user: Any) -> Any:
    return user


@pytest.fixture
def other_member(django_user_model: Any) -> Any:
    return _user_with_role(django_user_model, "bob", "member")


@pytest.fixture
def viewer(django_user_model: Any) -> Any:
    return _user_with_role(django_user_model, "victor", "viewer")


@pytest.fixture
def maintainer(django_user_model: Any) -> Any:
    return _user_with_role(django_user_model, "maya", "maintainer")


@pytest.fixture
def api(user: Any) -> APIClient:
    """An API client logged in as a member (the `user` fixture)."""
    return _api_client(user)


@pytest.fixture
def viewer_api(viewer: Any) -> APIClient:
    return _api_client(viewer)


@pytest.fixture
def other_api(other_member: Any) -> APIClient:
    return _api_client(other_member)


@pytest.fixture
def maintainer_api(maintainer: Any) -> APIClient:
    return _api_client(maintainer)


@pytest.fixture
def page(client: Client, user: Any) -> Client:
    """A browser-like Django test client with a logged-in session (a member's)."""
    client.force_login(user)
    return client


@pytest.fixture
def viewer_page(viewer: Any) -> Client:
    return _page_client(viewer)


@pytest.fixture
def other_page(other_member: Any) -> Client:
    return _page_client(other_member)


@pytest.fixture
def maintainer_page(maintainer: Any) -> Client:
    return _page_client(maintainer)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One Chromium for the whole run, shared by the browser test modules (traces/tests/test_browser.py
    says how it is found; a module that starts its own does so before this one starts)."""
    from traces.tests.test_browser import launched_chromium

    with launched_chromium() as browser:
        yield browser
