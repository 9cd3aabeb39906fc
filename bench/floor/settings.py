"""The floor: the least Django that can serve a stored trace, for bench_side_by_side.

No apps, no middleware, no authentication, no ORM: one view runs one SQL query
that makes PostgreSQL build the JSON, and hands the text back. It reads the
same `traces_trace` table as tunix-rt (`FLOOR_DATABASE_URL`), through the same
driver (psycopg 3) and connection pool, served by the same granian. Whatever
tunix-rt spends above this is what its framework, auth and serializers cost.
"""

from __future__ import annotations

import os
from typing import Any

import environ

SECRET_KEY = "bench-floor-secret-key-not-for-production-" + "x" * 30
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "bench.floor.urls"
WSGI_APPLICATION = "bench.floor.wsgi.application"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
TEMPLATES: list[dict[str, Any]] = []
USE_TZ = True
_db: dict[str, Any] = environ.Env().db_url_config(os.environ["FLOOR_DATABASE_URL"])
_db["OPTIONS"] = {"pool": {"min_size": 1, "max_size": 10, "timeout": 10.0}}
DATABASES = {"default": _db}
LOGGING_CONFIG = None
