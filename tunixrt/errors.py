"""What counts as a database outage, and what the client is told while it lasts (API and pages alike)."""

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest

API_PREFIX = "/api/"

DATABASE_UNAVAILABLE = "The database is unavailable. Try again in a few seconds."
DATABASE_RETRY_AFTER_SECONDS = 5
INTERNAL_ERROR = "Internal server error."


def is_api(request: HttpRequest) -> bool:
    """Whether the request is for the API, whose every answer (errors included) is JSON."""
    return request.path_info.startswith(API_PREFIX)


def is_database_outage(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached or used, rather than that a query was wrong.

    Connection refused or lost, a pool that timed out waiting for a connection
    (psycopg_pool's PoolTimeout is an OperationalError), SQLite unable to open or
    lock its file: all pass by themselves, so the answer is a 503 worth retrying.
    Integrity, data and programming errors are bugs or bad input, not outages.
    """
    return isinstance(exc, OperationalError | InterfaceError)
