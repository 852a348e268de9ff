# imaginebot: one process with the Slack and Discord adapters and the HTTP
# server (Slack events, /healthz, /metrics) on $PORT.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PORT=3000 \
    IMAGINEBOT_DB=/data/imaginebot.db \
    IMAGINEBOT_CONFIG=/app/config/imaginebot.toml

WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY bots ./bots
COPY config ./config
RUN pip install . \
    && useradd --create-home --uid 10001 imaginebot \
    && mkdir -p /data && chown imaginebot /data

# The SQLite database (limits, accounting, pending refunds) lives on a volume
# so that a new container keeps it.
VOLUME ["/data"]
USER imaginebot
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"3000\")}/healthz')" || exit 1
# SIGTERM (docker stop) lets running jobs finish within [server] shutdown_grace_seconds.
STOPSIGNAL SIGTERM
CMD ["imaginebot", "run"]
