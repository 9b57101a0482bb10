# syntax=docker/dockerfile:1
# qinggan HTTP service: `docker build -t qinggan .` then
#   docker run --rm -p 7860:7860 -v /path/to/bundle:/model:ro -e QINGGAN_MODEL=/model qinggan
# (without a mounted bundle it serves the built-in model, if this copy of the package has one).
# Every option is an env var QINGGAN_*; see docs/api.md.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip wheel --wheel-dir /wheels /wheels/qinggan-*.whl

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    QINGGAN_HOST=0.0.0.0 \
    QINGGAN_PORT=7860
# The serving install only: no torch, no transformers.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels qinggan \
 && useradd --system --uid 10001 --create-home --home-dir /home/qinggan qinggan
USER qinggan
WORKDIR /home/qinggan
EXPOSE 7860
# Liveness: /health is 200 while the batching worker runs, 503 if it died.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('QINGGAN_PORT', '7860'), timeout=4)"
# Exec form: the server is PID 1 and gets SIGTERM itself; it drains accepted requests and exits 0.
STOPSIGNAL SIGTERM
CMD ["qinggan", "serve"]
