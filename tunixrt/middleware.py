"""Login for every page; the API answers 401/403 itself instead of redirecting."""

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponseBase
from django.http.response import HttpResponseRedirectBase
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails


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
        if request.path_info.startswith("/api/"):
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
