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

# Dependencies first, in their own layer: a change to the source rebuilds only
# the layers below, not the ~150 MB of libraries.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && useradd --create-home --uid 10001 imaginebot \
    && mkdir -p /data && chown imaginebot /data

COPY README.md ./
COPY core ./core
COPY bots ./bots
COPY config ./config
RUN pip install --no-deps .

# The SQLite database (limits, accounting, pending refunds) lives on a volume
# so that a new container keeps it. Your own config: mount it over
# /app/config/imaginebot.toml, or elsewhere and set IMAGINEBOT_CONFIG.
VOLUME ["/data"]
USER imaginebot
EXPOSE 3000
# Liveness, not readiness: any HTTP answer from /healthz (200, or 503 while
# Discord reconnects or an adapter is down) means the process is alive, so a
# reconnect never gets the container restarted. Readiness is /healthz == 200.
# --start-period covers the first Discord login and gateway connection.
HEALTHCHECK --start-period=90s --interval=30s --timeout=5s --retries=3 \
    CMD python -c "import http.client, os; c = http.client.HTTPConnection('127.0.0.1', int(os.environ.get('PORT', '3000')), timeout=4); c.request('GET', '/healthz'); c.getresponse()" || exit 1
# SIGTERM (docker stop) lets running jobs finish within [server] shutdown_grace_seconds.
STOPSIGNAL SIGTERM
CMD ["imaginebot", "run"]
