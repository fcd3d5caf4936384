# Watchfloor worker, simulator and tools in one image.
#
#   docker build -t watchfloor:0.1.0 .
#   docker run --rm watchfloor:0.1.0 --help
#
# The base is pinned by tag AND digest: the digest wins, the tag is for people. The digest
# is the multi-platform index of python:3.11.16-slim-bookworm as the Docker Official Images
# record it (2026-09-01); it was not pulled from this repository's CI, which has no
# Docker engine. Bump both together (docs/deploy.md, "Updating the base image").
ARG PYTHON_IMAGE=python:3.11.16-slim-bookworm@sha256:c425d915a89a6dcd3183b1797ad9bd8878caff5a417f6371c8df93c8ea8b727f

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

# Compilers live only in this stage: faust-streaming publishes x86_64 wheels only, so an
# arm64 build (Apple silicon, Graviton) compiles its Cython extensions here.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends gcc g++ libc6-dev; \
    rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/watchfloor/venv
ENV PATH=/opt/watchfloor/venv/bin:$PATH

WORKDIR /opt/watchfloor/app
# Dependencies first, so that a code change does not reinstall them.
COPY pyproject.toml README.md* ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\\n'.join(p['dependencies'] + p['optional-dependencies']['rocksdb']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY streams ./streams
COPY schemas ./schemas
COPY seeds ./seeds
# Served by every worker at /runbooks/ (dashboards link there): an air-gapped command
# centre has them without reaching any outside site.
COPY docs/runbooks ./docs/runbooks
# Compiles the counting path with mypyc (streams/native.py) with this stage's gcc.
COPY setup.py ./
# Editable on purpose: streams/settings.py finds seeds/ (and the event schemas) beside the
# package (PROJECT_ROOT), so the tree must stay a tree. The final stage copies the venv
# and the tree to the same paths, which keeps the editable finder valid.
RUN pip install --no-deps -e . \
    && python -c "import streams.settings as s; assert s.PROJECT_ROOT.as_posix() == '/opt/watchfloor/app', s.PROJECT_ROOT" \
    && python -m compileall -q /opt/watchfloor/app/streams

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG WATCHFLOOR_UID=10001
LABEL org.opencontainers.image.title="watchfloor" \
      org.opencontainers.image.description="Per-district public-safety figures from Kafka, exported to Prometheus" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"

# A fixed numeric user, so that Kubernetes' runAsNonRoot can verify it without a passwd
# lookup and volume ownership (fsGroup) matches across image rebuilds.
RUN set -eux; \
    groupadd --system --gid "${WATCHFLOOR_UID}" watchfloor; \
    useradd --system --uid "${WATCHFLOOR_UID}" --gid watchfloor --home-dir /var/lib/watchfloor \
        --no-create-home --shell /usr/sbin/nologin watchfloor; \
    mkdir -p /var/lib/watchfloor; \
    chown watchfloor:watchfloor /var/lib/watchfloor

COPY --from=build /opt/watchfloor /opt/watchfloor

ENV PATH=/opt/watchfloor/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WATCHFLOOR_WEB_HOST=0.0.0.0 \
    WATCHFLOOR_WEB_PORT=6066 \
    WATCHFLOOR_DATA_DIR=/var/lib/watchfloor \
    WATCHFLOOR_LOG_JSON=true

USER ${WATCHFLOOR_UID}:${WATCHFLOOR_UID}
WORKDIR /var/lib/watchfloor
VOLUME ["/var/lib/watchfloor"]
EXPOSE 6066

# Liveness only (/health): /ready stays 503 while tables recover, which can take minutes
# and is no reason to restart the container. No curl in a slim image, so Python asks.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('WATCHFLOOR_WEB_PORT', '6066'), timeout=4)"]

# The app handles SIGTERM itself (commit, leave the group); exec form keeps it PID 1's
# direct signal target.
STOPSIGNAL SIGTERM
ENTRYPOINT ["watchfloor"]
CMD ["worker"]
