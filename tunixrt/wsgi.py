"""WSGI entry point (gunicorn tunixrt.wsgi)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tunixrt.settings")

application = get_wsgi_application()

# Everything loaded so far (Django, DRF, the apps: ~200k objects) lives as long as
# the process. Frozen, the cyclic collector stops walking it on every full
# collection, which otherwise lands a multi-millisecond pause on some request.
gc.freeze()
