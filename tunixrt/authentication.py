"""API authentication (kept apart from tunixrt.api: DRF imports it while loading its views)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.db import connections, router
from django.db.models import Field, Model, Value
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from tunixrt.models import ApiToken, token_digest
from tunixrt.roles import remember_role, role_rank_sql
from tunixrt.throttling import throttle_anonymous


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication against hashed tokens (`ApiToken`), with the lookup as one raw query.

    The presented key is hashed (SHA-256) and looked up by its digest, one unique-index probe.
    An ORM `select_related("user").get(...)` spends ~0.5 ms building SQL and models on every
    API request: twice the query itself, and ~10 % of a single-trace capture. Same checks,
    messages and result (the user, and the token with that user attached). On PostgreSQL the
    query is bound server-side and prepared once per pooled connection.

    Being the last authenticator, it sees every API call that no session authenticated, so it
    also applies the anonymous rate limit (see `tunixrt.throttling.AnonRateThrottle`).
    """

    model = ApiToken

    # digest -> (monotonic expiry, the lookup's converted row): see `recent`. Bounded by RECENT_MAX.
    _recent: dict[str, tuple[float, list[Any]]] = {}
    RECENT_MAX = 1024

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        try:
            result = super().authenticate(request)
        except exceptions.AuthenticationFailed:
            throttle_anonymous(request)
            raise
        if result is None:
            throttle_anonymous(request)
        return result

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        token_model = self.get_model()
        user_model = cast("type[Model]", token_model._meta.get_field("user").related_model)
        db = router.db_for_read(user_model)
        query = _token_query(token_model, user_model, db)
        digest = token_digest(key)
        values = self.recent(digest) or self._lookup(connections[db], query, digest)
        user: Any = user_model.from_db(db, query.attnames, values[:-3])
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        remember_role(user, values[-3])
        token = token_model(user=user, digest=digest, prefix=values[-2], created=values[-1])
        token._state.adding = False
        token._state.db = db
        return (user, token)

    @classmethod
    def recent(cls, digest: str) -> list[Any] | None:
        """The row a lookup of `digest` found less than API_TOKEN_CACHE_SECONDS ago in this process.

        The lookup is a database round trip, on an unfiltered list page or one trace a third
        of the request. Issuing or deleting a token, deactivating a user and changing anyone's
        groups forget every remembered row at once in this process (`forget_tokens`, wired to
        those signals in `tunixrt.apps`); other processes see such a change within the TTL.
        """
        hit = cls._recent.get(digest)
        if hit is None or hit[0] < clock():
            return None
        return hit[1]

    @classmethod
    def _lookup(cls, connection: Any, query: _TokenQuery, digest: str) -> list[Any]:
        row = cls._fetch(connection, query.sql, digest)
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        values = list(row)
        # Convert the values the ORM would (SQLite returns datetimes as text, booleans as ints).
        for i, field in query.converted:
            expression = Value(None, output_field=field)
            for convert in [*connection.ops.get_db_converters(expression), *field.get_db_converters(connection)]:
                values[i] = convert(values[i], expression, connection)
        ttl = settings.API_TOKEN_CACHE_SECONDS
        if ttl > 0:
            if len(cls._recent) >= cls.RECENT_MAX:
                cls._recent.clear()
            cls._recent[digest] = (clock() + ttl, values)
        return values

    @staticmethod
    def _fetch(connection: Any, sql: str, digest: str) -> Any:
        if connection.vendor == "postgresql":
            import psycopg

            connection.ensure_connection()
            with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
                cur.execute(sql, [digest], prepare=True)
                return cur.fetchone()
        with connection.cursor() as cur:
            cur.execute(sql, [digest])
            return cur.fetchone()


clock = time.monotonic  # the token cache's clock (tests move it on)


@dataclass(frozen=True)
class _TokenQuery:
    sql: str
    attnames: list[str]  # the user's fields, in the order the query returns them (then role rank, prefix, created)
    converted: tuple[tuple[int, Field[Any, Any]], ...]  # (position, field) of the values the backend converts


@functools.cache
def _token_query(token_model: type[Model], user_model: type[Model], db: str) -> _TokenQuery:
    """The lookup for these models on database `db`, built once per process (~30 µs a request before)."""
    connection = connections[db]
    fields = user_model._meta.concrete_fields
    columns = ", ".join(f'u."{f.column}"' for f in fields)
    role = role_rank_sql(f'u."{user_model._meta.pk.column}"', user_model)
    sql = (
        f'SELECT {columns}, {role}, t."prefix", t."created" FROM "{user_model._meta.db_table}" u'  # noqa: S608
        f' INNER JOIN "{token_model._meta.db_table}" t ON t."user_id" = u."{user_model._meta.pk.column}"'
        ' WHERE t."digest" = %s'
    )
    prefix_field = cast(Field[Any, Any], token_model._meta.get_field("prefix"))
    created_field = cast(Field[Any, Any], token_model._meta.get_field("created"))
    selected: list[Field[Any, Any] | None] = [*fields, None, prefix_field, created_field]  # None: the role rank
    converted = tuple(
        (i, field)
        for i, field in enumerate(selected)
        if field is not None
        and (connection.ops.get_db_converters(Value(None, output_field=field)) or field.get_db_converters(connection))
    )
    return _TokenQuery(sql, [f.attname for f in fields], converted)


def forget_tokens(*args: Any, **kwargs: Any) -> None:
    """Forget every token lookup this process remembers (a signal receiver: a token, user or role changed)."""
    TokenAuthentication._recent.clear()
