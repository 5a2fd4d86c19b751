# The rollout worker (and the starter, and the emulator) as one image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
COPY rollout/__init__.py rollout/__init__.py
RUN pip install --upgrade pip && pip install .

COPY . .
RUN pip install --no-deps . && useradd --system --uid 10001 rollout
USER rollout

# Metrics (Prometheus) of the worker.
EXPOSE 9464
CMD ["python", "worker.py"]
