"""DRF's browsable API for people: indented JSON, a root at /api/, and a page its own CSP lets work."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from traces.tests.factories import make_trace
from tunixrt.models import ApiToken

pytestmark = pytest.mark.django_db

HTML = {"Accept": "text/html"}


def test_json_is_compact_unless_an_indent_is_asked_for(api):
    make_trace(prompt="Indent me?")
    compact = api.get("/api/traces").content.decode()
    assert "\n" not in compact

    indented = api.get("/api/traces", HTTP_ACCEPT="application/json; indent=2").content.decode()
    assert indented.startswith('{\n  "')
    assert '\n      "prompt": "Indent me?"' in indented


def test_the_browsable_api_shows_json_indented_by_four(page):
    make_trace(prompt="Read me?")
    text = page.get("/api/traces", headers=HTML).content.decode()
    assert "{\n    &quot;" in text
    assert "\n            &quot;prompt&quot;: &quot;Read me?&quot;" in text


def test_the_api_root_lists_the_endpoints(api):
    response = api.get("/api/")
    assert response.status_code == 200
    body = response.json()
    assert body["traces"] == "http://testserver/api/traces"
    assert body["runs"] == "http://testserver/api/runs"
    assert body["leaderboard"] == "http://testserver/api/leaderboard"
    assert body["docs"] == "http://testserver/api/docs/"


def test_the_api_root_needs_a_login_or_a_token(user):
    assert APIClient().get("/api/").status_code == 403
    assert Client().get("/api/", headers=HTML).status_code == 403
    token = ApiToken.objects.issue(user)
    assert APIClient(HTTP_AUTHORIZATION=f"Token {token}").get("/api/").status_code == 200


def test_the_breadcrumbs_name_the_api_root(page):
    make_trace()
    text = page.get("/api/traces", headers=HTML).content.decode()
    crumbs = text.split('class="breadcrumb"')[1].split("</ul>")[0]
    assert '<a href="/api/">API root</a>' in crumbs
    assert "Not Found" not in crumbs


def test_the_browsable_api_has_no_inline_script_and_a_tight_policy(page):
    response = page.get("/api/traces", headers=HTML)
    text = response.content.decode()
    policy = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in policy
    assert re.search(r"style-src-attr 'unsafe-hashes' 'sha256-[A-Za-z0-9+/=]+'", policy)
    assert "script-src 'self'" in policy
    assert "onclick" not in text
    nonce = re.search(r"<style nonce=\"([^\"]+)\">", text)
    assert nonce is None or f"'nonce-{nonce.group(1)}'" in policy


def test_the_apps_own_pages_keep_the_strict_policy(page):
    policy = page.get("/traces/").headers["Content-Security-Policy"]
    assert "style-src-attr" not in policy and "unsafe" not in policy
    # JSON answers are untouched too.
    assert "style-src-attr" not in page.get("/api/traces").headers.get("Content-Security-Policy", "")


def test_the_browsable_api_logs_out_with_a_plain_form(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    text = client.get("/api/traces", headers=HTML).content.decode()
    token = re.search(
        r'<form method="post" action="/accounts/logout/"><input type="hidden" '
        r'name="csrfmiddlewaretoken" value="([^"]+)">',
        text,
    )
    assert token, "a logout form"
    assert client.post("/accounts/logout/", {"csrfmiddlewaretoken": token.group(1)}).status_code == 302
    assert client.get("/api/traces", headers=HTML).status_code == 403


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", " application/json "])
def test_api_clients_get_compact_json_whatever_plain_accept_they_send(api, accept):
    make_trace(prompt="Plain?")
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    response = api.get("/api/traces", **headers)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "\n" not in response.content.decode()


def test_other_accept_headers_and_the_format_parameter_are_negotiated(api, page):
    assert api.get("/api/traces", HTTP_ACCEPT="application/xml").status_code == 406
    assert page.get("/api/traces", {"format": "api"})["Content-Type"].startswith("text/html")
    assert page.get("/api/traces", {"format": "json"})["Content-Type"] == "application/json"
    assert page.get("/api/traces", headers={"Accept": "text/html,*/*;q=0.8"})["Content-Type"].startswith("text/html")
