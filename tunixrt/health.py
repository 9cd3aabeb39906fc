"""Health of the parts tunix-rt depends on: database, broker, workers, search index, Tunix, RediAI.

Nothing here imports JAX or Tunix: versions come from package metadata, so the
web process stays light.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from importlib import metadata
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from kombu import Connection

TRAINING_PACKAGES = ("google-tunix", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "qwix")


def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result: dict[str, Any] = check()
    except Exception as exc:  # noqa: BLE001 - a health check reports any failure
        result = {"status": "down", "error": f"{type(exc).__name__}: {exc}"}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def check_database() -> dict[str, Any]:
    def probe() -> dict[str, Any]:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        return {"status": "ok", "vendor": connection.vendor}

    return _timed(probe)


def _broker_kind(url: str) -> str:
    return url.split("://", 1)[0]


def check_broker() -> dict[str, Any]:
    url = settings.CELERY_BROKER_URL

    def probe() -> dict[str, Any]:
        conn = Connection(
            url,
            connect_timeout=settings.CELERY_BROKER_CONNECTION_TIMEOUT,
            transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        )
        try:
            # One immediate retry (a dropped pooled socket), not kombu's default 2 s back-off:
            # a broker that refuses connections is reported at once.
            conn.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=int(settings.CELERY_BROKER_CONNECTION_TIMEOUT)
            )
        finally:
            conn.release()
        return {"status": "ok", "transport": _broker_kind(url)}

    result = _timed(probe)
    result.setdefault("transport", _broker_kind(url))
    return result


def check_workers() -> dict[str, Any]:
    from tunixrt.models import WorkerHeartbeat

    def probe() -> dict[str, Any]:
        live = [
            {
                "hostname": w.hostname,
                "last_seen": w.last_seen,
                "concurrency": w.concurrency,
                "queues": w.queues,
                # Training workers: what JAX sees in their training interpreter ({} until probed).
                "devices": w.devices,
                "devices_summary": w.devices_summary if w.consumes_training else "",
            }
            for w in WorkerHeartbeat.objects.live().order_by("hostname")
        ]
        training = [w for w in live if settings.TRAINING_QUEUE in w["queues"]]
        return {
            "status": "ok" if live else "down",
            "count": len(live),
            "training_count": len(training),
            "gpu": any(w["devices"].get("platform") == "gpu" for w in training),
            "workers": live,
        }

    return _timed(probe)


def check_search_index() -> dict[str, Any]:
    """Traces that bulk captures stored and a worker has not made searchable yet."""
    from traces import searchindex

    def probe() -> dict[str, Any]:
        if not searchindex.enabled():
            return {"status": "ok", "pending": 0, "pending_capped": False, "engine": "substring (SQLite)"}
        cap = searchindex.HEALTH_BACKLOG_CAP
        pending = searchindex.backlog(cap)
        return {
            "status": "ok" if pending == 0 else "indexing",
            "pending": pending,
            "pending_capped": pending >= cap,  # counting stopped there: at least this many
            "engine": "PostgreSQL full-text",
        }

    return _timed(probe)


def training_versions() -> dict[str, Any]:
    versions: dict[str, str] = {}
    for name in TRAINING_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    installed = versions["google-tunix"] != "not installed" and versions["jax"] != "not installed"
    return {"status": "ok" if installed else "not installed", "versions": versions}


def check_rediai() -> dict[str, Any]:
    """The optional RediAI integration: off, mock (always healthy) or a real HTTP probe.

    Real probes are cached for REDIAI_HEALTH_CACHE_TTL_SECONDS (error text too),
    so a slow or dead RediAI cannot slow every health request down.
    """
    mode = settings.REDIAI_MODE
    if mode == "off":
        return {"status": "off", "mode": mode}
    if mode == "mock":
        return {"status": "ok", "mode": mode}
    url = settings.REDIAI_BASE_URL + settings.REDIAI_HEALTH_PATH
    key = f"rediai-health:{url}"
    cached = cache.get(key)
    if cached is not None:
        return {**cached, "cached": True}

    def probe() -> dict[str, Any]:
        try:
            with urllib.request.urlopen(url, timeout=settings.REDIAI_TIMEOUT_SECONDS) as resp:  # noqa: S310
                code = resp.status
        except urllib.error.HTTPError as exc:
            return {"status": "down", "error": f"HTTP {exc.code}"}
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return {"status": "down", "error": f"{type(exc).__name__}: {reason}"}
        return {"status": "ok" if 200 <= code < 300 else "down", "http_status": code}

    result = {**_timed(probe), "mode": mode, "url": url, "checked_at": timezone.now().isoformat()}
    ttl = settings.REDIAI_HEALTH_CACHE_TTL_SECONDS
    if ttl:
        cache.set(key, result, ttl)
    return {**result, "cached": False}


def health_report(database_error: BaseException | None = None) -> dict[str, Any]:
    """Every check; `database_error` is an outage this request already met (no need to wait for it again)."""
    if database_error is None:
        database = check_database()
    else:
        database = {"status": "down", "error": f"{type(database_error).__name__}: {database_error}"}
    if database["status"] == "ok":
        workers, search_index = check_workers(), check_search_index()
    else:
        # Both are read from the database: asking again would only wait out the
        # connection timeout twice more to report the same outage.
        workers = search_index = {"status": "unknown", "error": "The database is unavailable."}
    checks = {
        "database": database,
        "broker": check_broker(),
        "workers": workers,
        "search_index": search_index,
        "tunix": training_versions(),
        "rediai": check_rediai(),
    }
    # Workers, Tunix and an optional RediAI degrade the app; database and broker break it.
    if checks["database"]["status"] != "ok" or checks["broker"]["status"] != "ok":
        overall = "down"
    elif any(checks[name]["status"] == "down" for name in ("workers", "rediai")):
        overall = "degraded"
    else:
        overall = "ok"
    return {"status": overall, "checks": checks}


def status_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The report reduced to statuses, for a caller who could not be authenticated (no versions, hosts, errors)."""
    return {
        "status": report["status"],
        "checks": {name: {"status": check["status"]} for name, check in report["checks"].items()},
    }
