"""Failed logins lock out an account and an address for a cool-off, on every form that checks a password."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.db.models import F
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"  # the `user` fixture's
LIMIT = django_settings.AXES_FAILURE_LIMIT
LOCKED = "Too many failed logins for this account or from this address"


def log_in(
    username: str, password: str, address: str = "127.0.0.1", path: str = "/accounts/login/"
) -> Any:
    """One login through the form, as a browser does it: a fresh client, the form's CSRF token."""
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=address)
    client.get(path)
    data = {"username": username, "password": password, "csrfmiddlewaretoken": client.cookies["csrftoken"].value}
    response = client.post(path, data)
    response.client = client
    return response


def logged_in(response: Any) -> bool:
    return bool(response.status_code == 302 and "_auth_user_id" in response.client.session)


def fail(times: int, username: str = "alice", address: str = "127.0.0.1", path: str = "/accounts/login/") -> Any:
    for _ in range(times):
        response = log_in(username, "wrong password", address, path)
    return response


def test_the_default_limit_and_cool_off():
    cool_off = django_settings.AXES_COOLOFF_TIME

    assert LIMIT == 5
    assert cool_off == dt.timedelta(minutes=15)


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
def test_repeated_failures_lock_the_account_with_a_message_on_the_form(user, debug):
    with override_settings(DEBUG=debug):
        before = fail(LIMIT - 1)
        locking = fail(1)
        refused = log_in("alice", PASSWORD)

    assert before.status_code == 200
    assert "didn't match" in before.content.decode()
    for response in (locking, refused):
        assert response.status_code == 429
        page = response.content.decode()
        assert LOCKED in page
        assert "Try again in 15 minutes." in page
        assert '<form method="post"' in page
        assert int(response["Retry-After"]) == 15 * 60
    assert not logged_in(refused)


def test_failures_from_one_address_lock_that_address_for_every_account(user):
    for n in range(LIMIT):
        log_in(f"nobody{n}", "guess", address="203.0.113.7")

    assert log_in("alice", PASSWORD, address="203.0.113.7").status_code == 429
    assert logged_in(log_in("alice", PASSWORD, address="203.0.113.8"))


def test_failures_from_many_addresses_lock_the_account(user, django_user_model):
    django_user_model.objects.create_user(username="bob", password=PASSWORD)
    for n in range(LIMIT):
        fail(1, address=f"198.51.100.{n}")

    assert log_in("alice", PASSWORD, address="192.0.2.99").status_code == 429
    assert logged_in(log_in("bob", PASSWORD, address="192.0.2.99"))


def test_the_lockout_ends_after_the_cool_off(user, settings):
    settings.AXES_COOLOFF_TIME = dt.timedelta(minutes=2)
    fail(LIMIT)
    assert log_in("alice", PASSWORD).status_code == 429

    AccessAttempt.objects.update(attempt_time=F("attempt_time") - dt.timedelta(minutes=2, seconds=1))

    assert logged_in(log_in("alice", PASSWORD))


def test_a_successful_login_forgets_earlier_failures(user):
    fail(LIMIT - 1)
    assert logged_in(log_in("alice", PASSWORD))

    assert fail(LIMIT - 1).status_code == 200
    assert logged_in(log_in("alice", PASSWORD))


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
def test_the_admin_login_locks_out_too(user, debug):
    user.is_staff = user.is_superuser = True
    user.save()

    with override_settings(DEBUG=debug):
        locking = fail(LIMIT, path="/admin/login/")
        refused = log_in("alice", PASSWORD, path="/admin/login/")

    for response in (locking, refused):
        assert response.status_code == 429
        assert LOCKED in response.content.decode()
    assert 'name="next" value="/admin/"' in refused.content.decode()
    assert not logged_in(refused)


def test_the_browsable_api_login_locks_out_too(user):
    fail(LIMIT, path="/api-auth/login/")

    refused = log_in("alice", PASSWORD, path="/api-auth/login/")

    assert refused.status_code == 429
    assert LOCKED in refused.content.decode()
    assert not logged_in(refused)


def test_a_lockout_on_one_form_holds_on_the_others(user):
    fail(LIMIT, path="/admin/login/")

    assert log_in("alice", PASSWORD).status_code == 429
    assert log_in("alice", PASSWORD, path="/api-auth/login/").status_code == 429


def test_a_client_asking_for_json_gets_the_lockout_as_json(user):
    fail(LIMIT)
    client = Client(enforce_csrf_checks=True)
    client.get("/accounts/login/")
    data = {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": client.cookies["csrftoken"].value}

    response = client.post("/accounts/login/", data, HTTP_ACCEPT="application/json")

    assert response.status_code == 429
    assert LOCKED in response.json()["detail"]
    assert int(response["Retry-After"]) == 15 * 60
