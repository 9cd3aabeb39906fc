"""WSGI entry point of the floor app (`granian --interface wsgi bench.floor.wsgi:application`)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.floor.settings")
application = get_wsgi_application()
