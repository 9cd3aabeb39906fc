FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TUNIXRT_VAR_DIR=/app/var
WORKDIR /app
COPY requirements.txt requirements-train.txt ./
RUN pip install --no-cache-dir -r requirements.txt \
 && pip install --no-cache-dir --no-deps -r requirements-train.txt
COPY . .
RUN DEBUG=true SECRET_KEY=build python manage.py collectstatic --noinput -v0
EXPOSE 8000
# /metrics sums the request counts of every gunicorn worker from PROMETHEUS_MULTIPROC_DIR, emptied at each start.
# No gunicorn request-line limit: its 400 is plain text; Django answers an over-long URL
# itself (URL_MAX_LENGTH), as JSON under /api/.
CMD ["sh", "-c", "export PROMETHEUS_MULTIPROC_DIR=/app/var/prometheus && rm -rf \"$PROMETHEUS_MULTIPROC_DIR\" && mkdir -p \"$PROMETHEUS_MULTIPROC_DIR\" && exec gunicorn tunixrt.wsgi --bind 0.0.0.0:8000 --workers 3 --threads 4 --limit-request-line 0"]
