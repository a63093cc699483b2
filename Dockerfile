# One image for every process of the service; the command picks it:
#   web     gunicorn --worker-class gevent --bind 0.0.0.0:8000 signaling_web.wsgi:app   (default)
#   worker  celery -A media_tasks.app worker -Q <prefix>.shard.0,...,<prefix>.shard.<n-1>
#   flower  celery -A media_tasks.app flower --address=0.0.0.0
#   kms     python -m kms_emulator --host 0.0.0.0 --port 8888 --mode media
# The Helm chart (helm/signaling) sets these commands.

# --- builder: the pinned requirements in a virtualenv, with whatever build tools they need ---
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
RUN pip install --upgrade pip \
 && pip install -r /tmp/requirements.txt

# --- runtime: slim Python, the virtualenv and the application code, no compilers, non-root ---
FROM python:3.11-slim AS runtime
ARG UID=10001
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid ${UID} signaling \
 && useradd --system --uid ${UID} --gid ${UID} --home-dir /app --no-create-home --shell /usr/sbin/nologin signaling
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY settings.py celeryconfig.py ./
COPY signaling_web ./signaling_web
COPY media_tasks ./media_tasks
COPY models ./models
COPY messaging ./messaging
COPY kurento ./kurento
COPY kms_emulator ./kms_emulator
COPY signaling_cli ./signaling_cli
COPY observability ./observability
# ./var is where a dev deployment keeps its generated SECRET_KEY; in Kubernetes SECRET_KEY
# always comes from a Secret and the root file system can stay read-only.
RUN mkdir -p /app/var && chown ${UID}:${UID} /app/var
USER ${UID}:${UID}
EXPOSE 8000 5555 8888
CMD ["gunicorn", "--worker-class", "gevent", "--workers", "1", "--worker-connections", "4000", \
     "--bind", "0.0.0.0:8000", "--graceful-timeout", "35", "--timeout", "60", \
     "--keep-alive", "75", "--config", "python:signaling_web.gunicorn_config", "signaling_web.wsgi:app"]
