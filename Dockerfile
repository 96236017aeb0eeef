# Fleetweb image for docker-compose.yml: web (gunicorn), the agents' gateway (uvicorn, 8001), worker and beat share it.

# The renderers of application sources, at the versions the tests run (localfleet/go/: the same pinned modules).
FROM golang:1.26 AS renderers
COPY localfleet/go/helm-v4.3.2 /src/helm
COPY localfleet/go/kustomize-v5.8.1 /src/kustomize
RUN cd /src/helm && CGO_ENABLED=0 go build -trimpath -mod=readonly \
        -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=v4.3.2" -o /out/helm helm.sh/helm/v4/cmd/helm \
    && cd /src/kustomize && CGO_ENABLED=0 go build -trimpath -mod=readonly -ldflags "-s -w" -o /out/kustomize \
        sigs.k8s.io/kustomize/kustomize/v5

FROM python:3.11-slim
COPY --from=renderers /out/helm /out/kustomize /usr/local/bin/

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 FLEETWEB_STATIC_ROOT=/app/staticfiles \
    FLEETWEB_HELM=/usr/local/bin/helm FLEETWEB_KUSTOMIZE=/usr/local/bin/kustomize
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
