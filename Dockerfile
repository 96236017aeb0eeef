# Fleetweb image for docker-compose.yml: web (gunicorn), the agents' gateway (uvicorn, 8001), worker and beat share it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 FLEETWEB_STATIC_ROOT=/app/staticfiles
WORKDIR /app

COPY pyproject.toml README.md ./
COPY manage.py ./
COPY fleetweb ./fleetweb
COPY foundation ./foundation
COPY inventory ./inventory
COPY agents ./agents
COPY fleetagent ./fleetagent
COPY notifications ./notifications
COPY governance ./governance
COPY rollouts ./rollouts
COPY localfleet ./localfleet
COPY templates ./templates
COPY static ./static
RUN pip install --no-cache-dir . \
    && FLEETWEB_SECRET_KEY=collectstatic-only-not-a-real-secret-key-000 \
       FLEETWEB_ENCRYPTION_KEYS=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
       DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost:6379/0 \
       python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 fleetweb

USER fleetweb
EXPOSE 8000 8001
CMD ["gunicorn", "-c", "fleetweb/deploy/gunicorn.conf.py", "fleetweb.wsgi:application"]
