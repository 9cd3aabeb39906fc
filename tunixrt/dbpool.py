"""The check psycopg's connection pool runs on a connection before handing it to Django."""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool


def check_connection(conn: Any) -> None:
    """psycopg_pool's own check (an empty query), which on a dead connection also weeds out every idle one.

    After a PostgreSQL restart every pooled connection is dead. psycopg_pool's
    `getconn` checks them one at a time and sleeps a growing back-off between
    failures (1 s, 2 s, 4 s …), so with a few dead connections in the pool the
    first requests wait out the pool timeout and fail. Here the first failure
    checks the whole pool at once (`ConnectionPool.check`, which replaces the
    dead ones): the request that noticed waits one back-off (~1 s) for a fresh
    connection, and the requests after it get fresh connections straight away.
    """
    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        pool = getattr(conn, "_pool", None)  # getconn sets it on the connection it is checking
        if isinstance(pool, ConnectionPool):
            pool.check()
        raise
