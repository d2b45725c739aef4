# One image for every portal process (web, workers, beat) and the demo application.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_SETTINGS_MODULE=hadr_portal.settings \
    HADR_STATIC_ROOT=/app/staticfiles HADR_PG_BIN=/usr/lib/postgresql/15/bin
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 pgbackrest \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN HADR_SECRET_KEY=build-only-build-only-build-only-build-only-build-only \
    HADR_DATABASE_URL=postgres://build@localhost/build HADR_REDIS_URL=redis://localhost/0 \
    python manage.py collectstatic --noinput --verbosity 0
RUN useradd --system --home /app hadr && chown -R hadr /app \
 && mkdir -p /var/backups/hadr && chown hadr /var/backups/hadr && chmod 700 /var/backups/hadr \
 && mkdir -p /var/lib/hadr/pgbackrest && chown hadr /var/lib/hadr/pgbackrest
USER hadr
EXPOSE 8000
CMD ["gunicorn", "hadr_portal.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", "--access-logfile", "-", \
     "--logger-class", "hadr_portal.core.gunicorn_logging.RedactingLogger"]
