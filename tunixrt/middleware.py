"""Error answers the client can use (JSON under /api/, a 503 while the database is down); login for every page."""

import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.contrib.auth.views import redirect_to_login
from django.contrib.messages.middleware import MessageMiddleware
from django.core.exceptions import DisallowedHost
from django.core.signals import got_request_exception
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.http.response import HttpResponseRedirectBase
from django.shortcuts import resolve_url
from django.template.loader import render_to_string
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails
from rest_framework.response import Response

from tunixrt.errors import (
    DATABASE_RETRY_AFTER_SECONDS,
    DATABASE_UNAVAILABLE,
    INTERNAL_ERROR,
    is_api,
    is_database_outage,
)

_UNCAUGHT = "_tunixrt_uncaught_exception"


@receiver(got_request_exception, dispatch_uid="tunixrt.middleware.remember_uncaught_exception")
def remember_uncaught_exception(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """Keep the exception Django is turning into a 500 on the request, for ErrorResponseMiddleware.

    Django converts an exception into a response where it is raised (in a view,
    or in any middleware's process_request/process_view, e.g. the session lookup
    behind the login check), so no middleware ever sees it propagate; this signal
    is sent inside the except block, where the exception is still at hand.
    """
    if request is not None:
        setattr(request, _UNCAUGHT, sys.exc_info()[1])


class ErrorResponseMiddleware:
    """The outermost middleware: errors the client can use, whatever part of Django produced them.

    * A database outage anywhere in the request is a 503 with `Retry-After`: JSON
      under /api/, a short HTML page elsewhere. The app recovers by itself: the next
      request after the database returns gets a fresh, checked connection.
    * Under /api/ every other error is JSON too: Django's own pages (a rejected
      Host header, an exception outside the DRF view, DEBUG's technical pages) are
      replaced by `{"detail": ...}` with the same status. DRF's responses are left
      alone (they are negotiated: JSON, or the browsable API for a browser).
    * A URL longer than URL_MAX_LENGTH is a 414 (the web server answers one itself, with no
      body, only past 65,534 characters, URL_MAX_LENGTH's highest value).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        api = is_api(request)
        if len(request.get_full_path()) > settings.URL_MAX_LENGTH:
            detail = f"The URL is longer than {settings.URL_MAX_LENGTH:,} characters."
            if api:
                return JsonResponse({"detail": detail}, status=414)
            return HttpResponse(detail, status=414, content_type="text/plain; charset=utf-8")
        response = self.get_response(request)
        if response.status_code < 400:
            return response
        uncaught = getattr(request, _UNCAUGHT, None)
        if uncaught is not None and is_database_outage(uncaught):
            return self.database_unavailable(request, api)
        if api and not isinstance(response, Response) and not _is_json(response):
            return JsonResponse({"detail": _detail(request, response)}, status=response.status_code)
        return response

    @staticmethod
    def database_unavailable(request: HttpRequest, api: bool) -> HttpResponse:
        response: HttpResponse
        if api:
            response = JsonResponse({"detail": DATABASE_UNAVAILABLE}, status=503)
        else:
            # Rendered without a request: the layout's user menu would need the database.
            html = render_to_string("503.html", {"retry_after": DATABASE_RETRY_AFTER_SECONDS})
            response = HttpResponse(html, status=503)
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response


def _is_json(response: HttpResponseBase) -> bool:
    return str(response.get("Content-Type", "")).startswith("application/json")


def _detail(request: HttpRequest, response: HttpResponseBase) -> str:
    if response.status_code == 500:
        return INTERNAL_ERROR
    if response.status_code == 400:
        try:
            request.get_host()
        except DisallowedHost:
            return "Invalid Host header."
    return f"{response.reason_phrase}."


class HtmxHttpRequest(HttpRequest):
    """The request type of page views (django-htmx sets `htmx`)."""

    htmx: HtmxDetails


class PageLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Django's LoginRequiredMiddleware, except under /api/.

    API clients must get a 401/403 from DRF's authentication rather than a 302
    to an HTML login form, so API views are left to DRF's permission classes.
    """

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: Any,
        view_kwargs: Any,
    ) -> HttpResponseBase | None:
        if is_api(request):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)

    # The stubs say a redirect comes back; for htmx it is htmx's client-side redirect.
    def handle_no_permission(  # type: ignore[override]
        self, request: HttpRequest, view_func: Callable[..., Any]
    ) -> HttpResponseRedirectBase:
        if request.headers.get("HX-Request") != "true":
            return super().handle_no_permission(request, view_func)
        # An htmx request from a page whose session has ended: following the
        # redirect would put the login form inside the fragment, so send the
        # whole window to it, coming back to the page afterwards.
        current = urlsplit(request.headers.get("HX-Current-URL", ""))
        back = "/"
        if current.path:
            back = current.path + (f"?{current.query}" if current.query else "")
        login = redirect_to_login(
            back, resolve_url(self.get_login_url(view_func)), self.get_redirect_field_name(view_func)
        )
        return HttpResponseClientRedirect(login["Location"])


class PageMessageMiddleware(MessageMiddleware):
    """Django's flash messages, for pages only: no API view adds or shows one.

    Setting up the message storage (cookie and session backends) on every request
    cost each API call ~20 µs; under /api/ there is none, as after a middleware
    that answered before this one.
    """

    def process_request(self, request: HttpRequest) -> None:
        if not is_api(request):
            super().process_request(request)
