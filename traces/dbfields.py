"""Model fields stored more compactly on PostgreSQL than Django's defaults (SQLite keeps those).

- `Sha256Field`: a SHA-256 digest, 64 lowercase hex characters in Python (the
  API, exports, forms); 32 bytes of `bytea` on PostgreSQL instead of 65 of
  text, which also halves its unique index (migration 0011).
- `JSONTextField` (steps, meta): JSON stored as `json` (the text as written) on PostgreSQL
  instead of `jsonb` (~10 % larger, binary). For values nobody queries inside:
  it has no containment or key lookups there.
"""

from __future__ import annotations

import string
from typing import Any

from django.db import models
from django.db.models.lookups import IStartsWith, StartsWith

_HEX = frozenset(string.hexdigits.lower())


def _postgres(connection: Any) -> bool:
    return bool(connection.vendor == "postgresql")


class Sha256Field(models.CharField):  # type: ignore[type-arg]
    description = "SHA-256 digest (hex in Python, bytea on PostgreSQL)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["max_length"] = 64
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("max_length", None)
        return name, path, args, kwargs

    def db_type(self, connection: Any) -> str | None:
        return "bytea" if _postgres(connection) else super().db_type(connection)

    def cast_db_type(self, connection: Any) -> str | None:
        return self.db_type(connection)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        value = super().get_db_prep_value(value, connection, prepared)
        if value is None or not _postgres(connection) or isinstance(value, bytes):
            return value
        text = str(value)
        if len(text) % 2 or not _HEX.issuperset(text):
            # Not a lowercase hex digest: no stored hash equals it (they are all 32 bytes).
            return b"\xff" + text.encode()
        return bytes.fromhex(text)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if isinstance(value, (bytes, memoryview)):
            return bytes(value).hex()
        return value


class _HexPrefixMixin:
    """`startswith`/`istartswith` on the hex text of the digest (PostgreSQL; elsewhere the text itself)."""

    case_insensitive = False

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs_sql, lhs_params = compiler.compile(self.lhs)  # type: ignore[attr-defined]
        prefix = str(self.rhs)  # type: ignore[attr-defined]
        if self.case_insensitive:
            prefix = prefix.lower()
        return f"encode({lhs_sql}, 'hex') LIKE %s", [*lhs_params, connection.ops.prep_for_like_query(prefix) + "%"]


@Sha256Field.register_lookup
class Sha256StartsWith(_HexPrefixMixin, StartsWith):
    pass


@Sha256Field.register_lookup
class Sha256IStartsWith(_HexPrefixMixin, IStartsWith):
    case_insensitive = True


class JSONTextField(models.JSONField):
    description = "JSON (json on PostgreSQL, not jsonb)"

    def db_type(self, connection: Any) -> str | None:
        return "json" if _postgres(connection) else super().db_type(connection)

    def cast_db_type(self, connection: Any) -> str | None:
        return self.db_type(connection)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if isinstance(value, bytes):
            value = value.decode()
        elif value is not None and not isinstance(value, str):
            return value  # psycopg decodes `json` itself (Django only asks it not to for `jsonb`)
        return super().from_db_value(value, expression, connection)
