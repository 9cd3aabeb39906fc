"""The WSGI entry point hands Django the request's environ, not the server process's environment."""

from __future__ import annotations

import io
import os
import sys
from typing import Any

from tunixrt import wsgi

PROCESS = {
    "DATABASE_URL": "postgres://app:hunter2@db/tunixrt",
    "SECRET_KEY": "not-for-requests",
    "PATH": "/usr/bin",
    "HTTP_PROXY": "http://proxy.internal:3128",
    "SERVER_NAME": "build-host",
}


def request(**extra: Any) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/health",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        **extra,
    }


def served(scope: dict[str, Any]) -> dict[str, Any]:
    """What granian builds: a copy of the process environment, then the request's keys over it."""
    return PROCESS | scope


def test_the_process_environment_is_taken_out_of_every_request():
    scope = request()
    environ = wsgi.request_environ(served(scope), PROCESS)
    assert environ == scope
    assert "DATABASE_URL" not in environ and "SECRET_KEY" not in environ and "PATH" not in environ


def test_a_variable_named_like_a_header_is_not_a_header_the_client_sent():
    environ = wsgi.request_environ(served(request()), PROCESS)
    assert "HTTP_PROXY" not in environ


def test_a_header_the_client_sent_stays_even_when_a_variable_has_its_name():
    scope = request(HTTP_PROXY="sent-by-the-client")
    environ = wsgi.request_environ(served(scope), PROCESS)
    assert environ["HTTP_PROXY"] == "sent-by-the-client"


def test_server_keys_keep_the_request_values():
    environ = wsgi.request_environ(served(request()), PROCESS)
    assert environ["SERVER_NAME"] == "127.0.0.1"


def test_django_sees_no_process_variable_in_request_meta(monkeypatch):
    seen: dict[str, Any] = {}

    def django(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    monkeypatch.setattr(wsgi, "_django", django)
    monkeypatch.setenv("TUNIXRT_SECRET_FOR_TEST", "s3cret")  # in the environment the server copied
    monkeypatch.setattr(wsgi, "_PROCESS_ENVIRON", dict(os.environ))
    wsgi.application(dict(os.environ) | request(), lambda status, headers: None)
    assert "TUNIXRT_SECRET_FOR_TEST" not in seen
    assert seen["PATH_INFO"] == "/api/health" and seen["HTTP_HOST"] == "127.0.0.1:8000"
