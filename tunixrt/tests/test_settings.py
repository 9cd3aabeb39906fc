"""Settings fail loudly, naming the variable, on every invalid value.

Each case configures Django (`django.setup()`) in its own process whose
environment holds only that case's variables. Starting ~20 interpreters costs
~1 s of CPU each, so one subprocess imports Django and Celery once and forks a
child per case; no child inherits configured settings (the parent never reads
them), so each one loads `tunixrt.settings` afresh, exactly as a new process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG_VARS = (
    "DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "DEBUG", "TRACE_MAX_BYTES", "TRACE_BATCH_MAX_BYTES",
    "TRACE_UPLOAD_MAX_BYTES", "REDIAI_MODE", "REDIAI_BASE_URL", "REDIAI_HEALTH_PATH",
    "REDIAI_HEALTH_CACHE_TTL_SECONDS", "DB_POOL_MIN_SIZE", "DB_POOL_MAX_SIZE", "DB_POOL_TIMEOUT",
    "ALLOWED_HOSTS", "LOG_LEVEL", "LOG_FORMAT", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
    "CELERY_WORKER_CONCURRENCY", "TEST_DATABASE_NAME", "METRICS_TOKEN", "CACHE_URL", "API_THROTTLE_USER",
    "API_THROTTLE_ANON", "API_THROTTLE_TOKEN", "NUM_PROXIES", "LOGIN_FAILURE_LIMIT", "LOGIN_COOLOFF_SECONDS",
)

# Reads {case: env} on stdin, answers {case: [exit status, stdout, stderr]} on stdout.
FORKING_DRIVER = r"""
import json, os, sys, tempfile
# The slow imports, done once; none of them reads the settings.
import django, django.db.models, django.http, django.urls, django.utils.csp, tunixrt
from django.conf import settings
assert not settings.configured, "each child must load the settings itself"
cases = json.load(sys.stdin)
results = {}
for name, env in cases.items():
    out = tempfile.TemporaryFile("w+")
    err = tempfile.TemporaryFile("w+")
    pid = os.fork()
    if pid == 0:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        os.environ.clear()
        os.environ.update(env)
        try:
            django.setup()
            print("configured", flush=True)
        except BaseException:
            import traceback
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    out.seek(0)
    err.seek(0)
    results[name] = [os.waitstatus_to_exitcode(status), out.read(), err.read()]
json.dump(results, sys.stdout)
"""

INVALID = {
    "trace-max-too-small": ("TRACE_MAX_BYTES", {"TRACE_MAX_BYTES": "10"}),
    "trace-max-too-large": ("TRACE_MAX_BYTES", {"TRACE_MAX_BYTES": "99999999999"}),
    "trace-max-not-a-number": ("TRACE_MAX_BYTES", {"TRACE_MAX_BYTES": "abc"}),
    "batch-max-too-small": ("TRACE_BATCH_MAX_BYTES", {"TRACE_BATCH_MAX_BYTES": "1"}),
    "rediai-mode": ("REDIAI_MODE", {"REDIAI_MODE": "bogus"}),
    "rediai-ttl-too-long": ("REDIAI_HEALTH_CACHE_TTL_SECONDS", {"REDIAI_HEALTH_CACHE_TTL_SECONDS": "301"}),
    "rediai-ttl-negative": ("REDIAI_HEALTH_CACHE_TTL_SECONDS", {"REDIAI_HEALTH_CACHE_TTL_SECONDS": "-1"}),
    "rediai-real-not-http": ("REDIAI_BASE_URL", {"REDIAI_MODE": "real", "REDIAI_BASE_URL": "ftp://x"}),
    "pool-max-negative": ("DB_POOL_MAX_SIZE", {"DB_POOL_MAX_SIZE": "-1"}),
    "pool-min-above-max": ("DB_POOL_MIN_SIZE", {"DB_POOL_MIN_SIZE": "5", "DB_POOL_MAX_SIZE": "2"}),
    "pool-timeout-not-a-number": ("DB_POOL_TIMEOUT", {"DB_POOL_TIMEOUT": "soon"}),
    "database-mysql": ("DATABASE_URL", {"DATABASE_URL": "mysql://x"}),
    "database-not-a-url": ("DATABASE_URL", {"DATABASE_URL": "not a url"}),
    "broker-amqp": ("CELERY_BROKER_URL", {"CELERY_BROKER_URL": "amqp://x"}),
    "debug-not-a-boolean": ("DEBUG", {"DEBUG": "maybe"}),
    "log-level": ("LOG_LEVEL", {"LOG_LEVEL": "loud"}),
    "production-without-secret-key": ("SECRET_KEY", {"DEBUG": "false"}),
    "metrics-token-too-short": ("METRICS_TOKEN", {"METRICS_TOKEN": "short"}),
    "metrics-token-with-a-space": ("METRICS_TOKEN", {"METRICS_TOKEN": "two halves of a long token"}),
    "throttle-not-a-rate": ("API_THROTTLE_USER", {"API_THROTTLE_USER": "fast"}),
    "throttle-zero": ("API_THROTTLE_ANON", {"API_THROTTLE_ANON": "0/min"}),
    "throttle-unknown-period": ("API_THROTTLE_TOKEN", {"API_THROTTLE_TOKEN": "10/week"}),
    "cache-memcached": ("CACHE_URL", {"CACHE_URL": "memcache://127.0.0.1:11211"}),
    "cache-relative-folder": ("CACHE_URL", {"CACHE_URL": "filecache://var/cache"}),
    "proxies-negative": ("NUM_PROXIES", {"NUM_PROXIES": "-1"}),
    "login-limit-zero": ("LOGIN_FAILURE_LIMIT", {"LOGIN_FAILURE_LIMIT": "0"}),
    "login-cooloff-not-a-number": ("LOGIN_COOLOFF_SECONDS", {"LOGIN_COOLOFF_SECONDS": "15m"}),
}
VALID = {
    "defaults": {},
    "production-with-secret-key": {"DEBUG": "false", "SECRET_KEY": "a-long-production-secret-" + "k" * 40},
    "limits-at-their-bounds": {"TRACE_MAX_BYTES": "1024", "REDIAI_HEALTH_CACHE_TTL_SECONDS": "300"},
    "metrics-token": {"METRICS_TOKEN": "x" * 16},
    "rate-limits-and-lockout": {
        "API_THROTTLE_USER": "off", "API_THROTTLE_ANON": "30/second", "API_THROTTLE_TOKEN": "3/day",
        "NUM_PROXIES": "1", "LOGIN_FAILURE_LIMIT": "10", "LOGIN_COOLOFF_SECONDS": "60", "CACHE_URL": "locmem://",
    },
}


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    cases = {name: env for name, (_, env) in INVALID.items()} | VALID
    base = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    envs = {
        name: {
            **base,
            "DJANGO_SETTINGS_MODULE": "tunixrt.settings",
            "TUNIXRT_ENV_FILE": "/dev/null",
            "TUNIXRT_VAR_DIR": str(tmp_path_factory.mktemp("var")),
            "DEBUG": "true",
            **overrides,
        }
        for name, overrides in cases.items()
    }
    driver = subprocess.run(
        [sys.executable, "-c", FORKING_DRIVER],
        cwd=ROOT,
        env=base,
        input=json.dumps(envs),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {name: Outcome(*result) for name, result in json.loads(driver.stdout).items()}


@pytest.mark.parametrize("case", list(INVALID))
def test_an_invalid_value_stops_startup_naming_the_variable(outcomes, case):
    variable = INVALID[case][0]
    outcome = outcomes[case]

    assert outcome.returncode != 0
    assert "configured" not in outcome.stdout
    assert outcome.last_line.startswith("django.core.exceptions.ImproperlyConfigured:"), outcome.stderr
    assert variable in outcome.last_line


@pytest.mark.parametrize("case", list(VALID))
def test_valid_settings_configure(outcomes, case):
    outcome = outcomes[case]

    assert outcome.returncode == 0, outcome.stderr
    assert "configured" in outcome.stdout
