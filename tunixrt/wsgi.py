"""WSGI entry point (`granian --interface wsgi tunixrt.wsgi:application`, as bin/serve runs it)."""

import gc
import os
from collections.abc import Callable, Iterable
from typing import Any

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tunixrt.settings")

_django = get_wsgi_application()

# What the server itself sets in a request's environ (PEP 3333 and CGI); the rest of a
# request's keys are its headers (HTTP_*, CONTENT_TYPE, CONTENT_LENGTH).
_SERVER_KEYS = frozenset(
    {
        "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
        "SERVER_PROTOCOL", "SERVER_SOFTWARE", "GATEWAY_INTERFACE", "REMOTE_ADDR", "REMOTE_HOST",
        "REMOTE_PORT", "CONTENT_TYPE", "CONTENT_LENGTH", "RAW_URI", "REQUEST_URI",
    }
)


def request_environ(environ: dict[str, Any], process: dict[str, str]) -> dict[str, Any]:
    """`environ` without the entries the server copied from the process environment `process`.

    granian, like wsgiref, starts every request's environ from a copy of `os.environ`:
    DATABASE_URL, SECRET_KEY and the rest would reach `request.META` (and so DEBUG's error
    pages, which hide only names that look secret), and a variable such as HTTP_PROXY would
    read as a header the client sent. Server keys are kept (the request's value replaced the
    process's); a header named like a variable is kept when the client sent another value.
    """
    for name, value in process.items():
        if name in _SERVER_KEYS or name not in environ:
            continue
        if name.startswith("HTTP_") and environ[name] != value:
            continue
        del environ[name]
    return environ


# The environment as the server copies it: after this module and the settings loaded.
_PROCESS_ENVIRON = dict(os.environ)


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    return _django(request_environ(environ, _PROCESS_ENVIRON), start_response)


# Everything loaded so far (Django, DRF, the apps: ~200k objects) lives as long as
# the process. Frozen, the cyclic collector stops walking it on every full
# collection, which otherwise lands a multi-millisecond pause on some request.
gc.freeze()
