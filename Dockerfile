# syntax=docker/dockerfile:1
# One image for both jobstream roles: JOBSTREAM_ROLE=client (HTTP API + persistence) or
# JOBSTREAM_ROLE=server (compute). See docker-compose.yml for the whole stack.
#
#   docker build -t jobstream:local .
#   docker run --rm -e JOBSTREAM_ROLE=server -e JOBSTREAM_KAFKA_BROKERS=... jobstream:local
#
# The base is pinned by tag. For reproducible builds, pin it by digest as well, e.g.
#   FROM python:3.11.7-slim-bookworm@sha256:<digest>
# (`docker buildx imagetools inspect python:3.11.7-slim-bookworm` prints the digest).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# --- builder: install jobstream and its pinned dependencies into a virtualenv --------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Metadata first (setup.cfg holds install_requires, pyproject.toml the build backend; README.md is
# the long description: `README.m[d]` copies it when present without failing when it is not), then
# the package. Every dependency ships a wheel: no compiler is needed.
COPY setup.cfg pyproject.toml README.m[d] ./
COPY jobstream ./jobstream
RUN pip install . \
    && python -c "import jobstream.settings, faust, aiokafka, pymongo"

# --- final: the virtualenv on a clean slim base, run as an unprivileged user ---------------------
FROM ${PYTHON_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    JOBSTREAM_ROLE=client \
    JOBSTREAM_WEB_HOST=0.0.0.0 \
    JOBSTREAM_WEB_PORT=8080 \
    JOBSTREAM_DATA_DIR=/tmp/jobstream

RUN groupadd --system --gid 10001 jobstream \
    && useradd --system --uid 10001 --gid jobstream --home-dir /app --shell /usr/sbin/nologin jobstream \
    && mkdir -p /app /tmp/jobstream \
    && chown jobstream:jobstream /app /tmp/jobstream

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
USER jobstream:jobstream

EXPOSE 8080

# slim has no curl: ask /health with the standard library. A non-2xx answer raises, so exits 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${JOBSTREAM_WEB_PORT:-8080}/health', timeout=4)" || exit 1

# Exec form: the worker is PID 1 and receives SIGTERM directly for a graceful Faust shutdown.
CMD ["python", "-m", "jobstream", "worker", "--loglevel", "info"]
