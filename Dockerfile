FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TUNIXRT_VAR_DIR=/app/var
WORKDIR /app
COPY requirements.txt requirements-train.txt ./
RUN pip install --no-cache-dir -r requirements.txt \
 && pip install --no-cache-dir --no-deps -r requirements-train.txt
COPY . .
RUN DEBUG=true SECRET_KEY=build python manage.py collectstatic --noinput -v0
EXPOSE 8000
# /metrics sums the request counts of every web worker from PROMETHEUS_MULTIPROC_DIR, emptied at each start.
# granian serves Django (3 processes x 4 threads) and starts a worker that dies again; Django answers an
# over-long URL itself (URL_MAX_LENGTH, JSON under /api/), granian alone past 65,534 characters.
CMD ["sh", "-c", "export PROMETHEUS_MULTIPROC_DIR=/app/var/prometheus && rm -rf \"$PROMETHEUS_MULTIPROC_DIR\" && mkdir -p \"$PROMETHEUS_MULTIPROC_DIR\" && exec granian --interface wsgi tunixrt.wsgi:application --host 0.0.0.0 --port 8000 --workers 3 --blocking-threads 4 --http 1 --no-ws --respawn-failed-workers --workers-kill-timeout 5"]
