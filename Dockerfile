# The production image: the rollout worker and the operator CLI (and the Places emulator,
# which the compose file's `emulator` profile runs). No embedded stack, no tests, no .env.
# A pinned base; bump it deliberately (and rebuild) for Python security releases.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Billed requests waiting for Postgres: mount a volume here so they outlive the container.
    USAGE_SPOOL_PATH=/var/lib/rollout/unlogged-usage.jsonl
WORKDIR /app

# The exact dependency set, verified by hash (scripts/lock writes requirements.lock), in its
# own layer so code changes do not reinstall it.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

COPY . .
# Bytecode compiled at build: the worker never writes it (PYTHONDONTWRITEBYTECODE), and the
# workflow sandbox imports the workflow modules afresh for every workflow run.
RUN pip install --no-deps . \
    && python -m compileall -q /app \
    && useradd --system --uid 10001 rollout \
    && mkdir -p /var/lib/rollout && chown rollout /var/lib/rollout
USER rollout
VOLUME ["/var/lib/rollout"]

# Alive while the worker has been running within the last minute (worker.py --health).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "worker.py", "--health"]
# The worker's Prometheus endpoint when METRICS_PORT=9464 (and METRICS_BIND=0.0.0.0).
EXPOSE 9464
CMD ["python", "worker.py"]
