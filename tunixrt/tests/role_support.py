"""Clients that go through the real doors: an API token, and a session with CSRF checks on."""

from __future__ import annotations

from typing import Any

from django.test import Client
from rest_framework.test import APIClient

from tunixrt.models import ApiToken

ROLES = ("viewer", "member", "maintainer")


def token_client(user: Any) -> APIClient:
    """An API client that authenticates every request with the user's token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.objects.issue(user)}")
    return client


class CsrfClient(Client):
    """A logged-in browser: CSRF enforced, the token taken from the cookie a page set, as a form posts it."""

    def __init__(self, user: Any) -> None:
        super().__init__(enforce_csrf_checks=True)
        self.force_login(user)
        self.get("/")  # every page sets the csrftoken cookie (base.html renders the token)

    @property
    def csrf(self) -> str:
        return str(self.cookies["csrftoken"].value)

    def submit(self, path: str, data: dict[str, Any] | None = None, **extra: Any) -> Any:
        return self.post(path, {"csrfmiddlewaretoken": self.csrf, **(data or {})}, **extra)


def actor(request: Any, role: str) -> Any:
    """The user fixture of a role: viewer (victor), member (alice, the `user` fixture) or maintainer (maya)."""
    return request.getfixturevalue(role)


def owner_of(request: Any, acting: Any, whose: str) -> Any:
    """Who owns the object in a table row: the acting user, another member (bob), or nobody."""
    return {"own": acting, "other": request.getfixturevalue("other_member"), "nobody": None}[whose]


def change_allowed(role: str, whose: str) -> bool:
    """The rule every cancel, retry and delete follows."""
    return role == "maintainer" or (role == "member" and whose == "own")


def html(response: Any) -> str:
    return str(response.content.decode())
