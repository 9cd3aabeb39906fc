"""Prometheus metrics at `/metrics`: HTTP traffic, jobs, the task queue, the search backlog, workers, training speed.

Two kinds of figures:

* HTTP requests and their latency are counted by `RequestMetricsMiddleware` as
  they happen, labelled by the resolved view name (never the raw path, so the
  number of series stays bounded). Each web worker process counts its own; with
  `PROMETHEUS_MULTIPROC_DIR` set (bin/serve and the Docker image set it),
  prometheus_client keeps every process's counts in memory-mapped files in
  that folder and a scrape, whichever worker answers it, sums them all. The
  folder must be emptied before the server starts (bin/serve and the Docker
  commands do): files left by an earlier server would be summed in too.
  Without the variable the counts live in the process's memory, which is only
  right for a single process (runserver, tests).
* Everything else (jobs, queue depth, search backlog, live workers, steps/s of
  running runs, build info) is read at scrape time with a few cheap queries,
  so it is the same whichever worker answers and costs nothing between
  scrapes. A part that cannot be read (broker down, database down) is left
  out and `tunixrt_metrics_collector_success{collector=...}` says 0; the
  scrape itself never fails because of it.

Access: maintainers (tunixrt.roles; superusers are maintainers), or
`Authorization: Bearer <METRICS_TOKEN>`.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import platform
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

import django
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db.models import Count, Max, Min
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from tunixrt.roles import Role, role_of

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The capture API answers in ~2.5 ms; the low buckets tell its tail apart.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
RATE_WINDOW_SECONDS = 60  # steps/s of a running run: over the metric points of the last minute

if os.environ.get(MULTIPROC_ENV):
    # prometheus_client writes into the folder on the first request and fails if it is missing.
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)

# The *_created samples exist only in single-process mode; without them both modes expose the same series.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Not in prometheus_client's default registry: each scrape builds its own (see `render`).
REQUESTS = Counter(
    "tunixrt_http_requests",
    "HTTP requests answered, by view (resolved URL name), method and status code.",
    ["view", "method", "status"],
    registry=None,
)
LATENCY = Histogram(
    "tunixrt_http_request_duration_seconds",
    "Time from the request reaching Django to the response (its first byte for a stream), by view and method.",
    ["view", "method"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)

# Label lookups cost ~1 µs each under prometheus_client's lock; the children are kept here
# (a dict read is atomic under the GIL, and a lost race only creates the same child twice).
_counters: dict[tuple[str, str, str], Any] = {}
_histograms: dict[tuple[str, str], Any] = {}


def record_request(view: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request."""
    if method not in METHODS:
        method = "other"  # any string can arrive as a method: keep the label set bounded
    key = (view, method, str(status))
    counter = _counters.get(key)
    if counter is None:
        counter = _counters[key] = REQUESTS.labels(*key)
    counter.inc()
    hkey = (view, method)
    histogram = _histograms.get(hkey)
    if histogram is None:
        histogram = _histograms[hkey] = LATENCY.labels(*hkey)
    histogram.observe(seconds)


class RequestMetricsMiddleware:
    """Counts every request and its latency by view; first in MIDDLEWARE so it times the whole stack."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.static_prefix = "/" + settings.STATIC_URL.lstrip("/") if settings.STATIC_URL else None

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = self.get_response(request)
        record_request(
            self.view_label(request), request.method or "", response.status_code, time.perf_counter() - started
        )
        return response

    def view_label(self, request: HttpRequest) -> str:
        match = request.resolver_match
        if match is not None:
            return match.view_name  # "namespace:name", or the view's dotted path when unnamed
        # Answered before URL resolution (static files, redirects) or by none (404).
        if self.static_prefix and request.path_info.startswith(self.static_prefix):
            return "static"
        return "unmatched"


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def collect_jobs() -> Iterator[Metric]:
    from tunixrt.jobs import job_models

    family = _gauge("tunixrt_jobs", "Jobs in the database by kind and status.", ["kind", "status"])
    # Every job kind the lifecycle knows (tunixrt.jobs), labelled "run", "evaluation", "dataset_build".
    for model in job_models():
        kind = model.job_label.replace(" ", "_")
        statuses = [value for value, _ in model._meta.get_field("status").flatchoices]
        counts = dict(model._default_manager.order_by().values_list("status").annotate(n=Count("pk")))
        # Every known status, zeros included, so that alerts on a series never see it vanish.
        for status in [*statuses, *sorted(set(counts) - set(statuses))]:
            family.add_metric([kind, status], counts.get(status, 0))
    yield family


def _queue_names() -> list[str]:
    from tunixrt.celery import app

    queues = app.conf.task_queues
    return sorted({q.name for q in queues}) if queues else [app.conf.task_default_queue]


@functools.cache
def _redis_client(url: str) -> Any:
    import redis

    # Short timeouts: a dead broker must cost the scrape ~1 s at most, never hang it.
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


def queue_depths() -> dict[str, int] | None:
    """Messages waiting in each Celery queue, read from the broker; None when it cannot tell (memory://)."""
    url = settings.CELERY_BROKER_URL
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    names = _queue_names()
    if url.startswith(("redis://", "rediss://")):
        from kombu.transport.redis import PRIORITY_STEPS, Channel

        # Kombu keeps a queue as one Redis list per priority step: "default", "default\x06\x163", ...
        steps = options.get("priority_steps", PRIORITY_STEPS)
        prefix = options.get("global_keyprefix", "")
        keys = {name: [prefix + (f"{name}{Channel.sep}{step}" if step else name) for step in steps] for name in names}
        with _redis_client(url).pipeline(transaction=False) as pipe:
            for name in names:
                for key in keys[name]:
                    pipe.llen(key)
            lengths = iter(pipe.execute())
        return {name: sum(next(lengths) for _ in keys[name]) for name in names}
    if url.startswith("filesystem://"):
        # Kombu's filesystem transport: one "<stamp>_<uuid>.<queue>.msg" file per waiting message.
        wanted = {f"{name}.msg": name for name in names}
        depths = dict.fromkeys(names, 0)
        with os.scandir(options["data_folder_in"]) as entries:
            for entry in entries:
                queue = wanted.get(entry.name.partition(".")[2])
                if queue is not None:
                    depths[queue] += 1
        return depths
    return None


def collect_queue() -> Iterator[Metric]:
    depths = queue_depths()
    if depths is None:
        return
    family = _gauge("tunixrt_queue_depth", "Celery task messages waiting in the broker, by queue.", ["queue"])
    for name, depth in depths.items():
        family.add_metric([name], depth)
    yield family


def collect_search_backlog() -> Iterator[Metric]:
    from traces import searchindex

    cap = searchindex.SEARCH_BACKLOG_CAP
    yield GaugeMetricFamily(
        "tunixrt_search_backlog",
        f"Traces not yet in the full-text search index (PostgreSQL; always 0 on SQLite). Counting stops at {cap}.",
        value=searchindex.backlog(cap),
    )


def collect_workers() -> Iterator[Metric]:
    from tunixrt.models import WorkerHeartbeat

    cutoff = timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS)
    yield GaugeMetricFamily(
        "tunixrt_workers_live",
        f"Celery workers whose heartbeat is under {settings.WORKER_STALE_SECONDS} s old.",
        value=WorkerHeartbeat.objects.filter(last_seen__gte=cutoff).count(),
    )


def collect_training() -> Iterator[Metric]:
    """Progress and speed of the runs training now (a handful of rows)."""
    from runs.choices import RunStatus
    from runs.models import Run, RunMetric

    running = dict(
        Run.objects.filter(status__in=(RunStatus.RUNNING, RunStatus.CANCEL_REQUESTED))
        .order_by("pk")
        .values_list("pk", "summary__steps_done")
    )
    done = _gauge(
        "tunixrt_run_steps_done", "Training steps done by each running run (rate() of it is steps/s).", ["run"]
    )
    rate = _gauge(
        "tunixrt_run_steps_per_second",
        f"Training steps per second of each running run, over its last {RATE_WINDOW_SECONDS} s.",
        ["run"],
    )
    # The child reports one tokens_per_s point per step, written to the database every 0.5 s:
    # the steps between the first and last writes of the window over the time between them.
    cutoff = timezone.now() - timedelta(seconds=RATE_WINDOW_SECONDS)
    windows = {
        row["run_id"]: row
        for row in RunMetric.objects.filter(run_id__in=list(running), name="tokens_per_s", created_at__gte=cutoff)
        .order_by()
        .values("run_id")
        .annotate(first_step=Min("step"), last_step=Max("step"), first_at=Min("created_at"), last_at=Max("created_at"))
    }
    for pk, steps_done in running.items():
        label = [str(pk)]
        if isinstance(steps_done, int | float):
            done.add_metric(label, steps_done)
        window = windows.get(pk)
        if window is None:
            rate.add_metric(label, 0.0)  # no step for a minute: loading, compiling or stuck
            continue
        seconds = (window["last_at"] - window["first_at"]).total_seconds()
        if seconds > 0:
            rate.add_metric(label, (window["last_step"] - window["first_step"]) / seconds)
        # else: every point of the window came in one write; no interval to measure yet
    yield done
    yield rate


@functools.cache
def build_labels() -> dict[str, str]:
    """Versions of the app and of what it runs on (package metadata: JAX is never imported here)."""
    from tunixrt.health import training_versions

    try:
        with open(settings.BASE_DIR / "pyproject.toml", "rb") as f:
            version = str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        version = "unknown"
    packages = training_versions()["versions"]
    return {
        "version": version,
        "python": platform.python_version(),
        "django": django.get_version(),
        "tunix": packages["google-tunix"],
        "jax": packages["jax"],
        "jaxlib": packages["jaxlib"],
        "flax": packages["flax"],
    }


def collect_build_info() -> Iterator[Metric]:
    labels = build_labels()
    family = _gauge("tunixrt_build_info", "Versions of tunix-rt, Python, Django, Tunix and JAX; always 1.", labels)
    family.add_metric(list(labels.values()), 1)
    yield family


COLLECTORS: tuple[tuple[str, Callable[[], Iterator[Metric]]], ...] = (
    ("jobs", collect_jobs),
    ("queue", collect_queue),
    ("search_backlog", collect_search_backlog),
    ("workers", collect_workers),
    ("training", collect_training),
    ("build_info", collect_build_info),
)


class StateCollector(Collector):
    """The figures read at scrape time; a part that fails is left out, never the whole scrape."""

    def collect(self) -> Iterator[Metric]:
        success = _gauge(
            "tunixrt_metrics_collector_success",
            "1 when this part of the metrics could be read at this scrape, 0 when it was left out.",
            ["collector"],
        )
        for name, collect in COLLECTORS:
            try:
                families = list(collect())
            except Exception as exc:  # noqa: BLE001 - a broken part must not take the others down
                logger.warning("metrics: %s left out: %s: %s", name, type(exc).__name__, exc)
                success.add_metric([name], 0)
                continue
            success.add_metric([name], 1)
            yield from families
        yield success


def render() -> bytes:
    """The whole exposition, in Prometheus's text format."""
    registry = CollectorRegistry(auto_describe=False)
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        # Every process's counts, this one's included.
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    else:
        registry.register(REQUESTS)
        registry.register(LATENCY)
    registry.register(StateCollector())
    return generate_latest(registry)


def _forbidden(detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=403)


def _bearer_token(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def is_maintainer(user: Any) -> bool:
    return bool(user.is_authenticated and role_of(user) >= Role.MAINTAINER)


@login_not_required  # Prometheus comes with a token, not a session: answer 403 JSON, never a login redirect
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = _bearer_token(request)
    if token is not None:
        expected = settings.METRICS_TOKEN
        # Constant time: the comparison must not tell how much of a guess was right.
        if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
            return _forbidden("Invalid metrics token.")
    elif not is_maintainer(request.user):
        return _forbidden(
            "Metrics are for maintainers, or for a scraper sending Authorization: Bearer <METRICS_TOKEN>."
        )
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
