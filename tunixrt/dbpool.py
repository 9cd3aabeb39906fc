"""The check psycopg's connection pool runs on a connection before handing it to Django."""

from __future__ import annotations

import select
from typing import Any

from psycopg import pq
from psycopg_pool import ConnectionPool


def check_connection(conn: Any) -> None:
    """A pooled connection's check: free when its socket is quiet, an empty query otherwise.

    After a PostgreSQL restart every pooled connection is dead. The server says so on
    each of them (a FATAL "terminating connection" message, or the socket closing), so
    an idle connection whose socket has something to read, or has closed, is suspect; a
    quiet socket of an idle connection is alive as far as anyone can tell without a
    round trip, and such is every connection between two requests. (Checking every
    connection with a query cost each request a round trip to PostgreSQL: a third of a
    trace read's.)

    A suspect connection gets psycopg_pool's own check (an empty query), which on a dead
    connection also weeds out every idle one: psycopg_pool's `getconn` checks them one at
    a time and sleeps a growing back-off between failures (1 s, 2 s, 4 s …), so with a
    few dead connections in the pool the first requests waited out the pool timeout and
    failed. Here the first failure checks the whole pool at once (`ConnectionPool.check`,
    which replaces the dead ones): the request that noticed waits one back-off (~1 s) for
    a fresh connection, and the requests after it get fresh connections straight away.
    """
    if _quiet(conn):
        return
    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        pool = getattr(conn, "_pool", None)  # getconn sets it on the connection it is checking
        if isinstance(pool, ConnectionPool):
            pool.check()
        raise


def _quiet(conn: Any) -> bool:
    """Whether `conn` is open, idle, and its socket has nothing to read (no message, no close)."""
    try:
        pgconn = conn.pgconn
        if conn.closed or pgconn.status != pq.ConnStatus.OK:
            return False
        if pgconn.transaction_status != pq.TransactionStatus.IDLE:
            return False
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)  # any event (data, hang-up, error) means: ask the server
    except Exception:  # noqa: BLE001 - whatever went wrong, the full check decides
        return False
