# hcc-second-line-cds — the application image: gunicorn + the CDS Hooks service, non-root.
#
# It is not meant to face clients itself: run the production stack of compose.yaml (nginx in front, which buffers
# slow clients and answers its own errors as JSON; PostgreSQL as the store):
#
#   HCC_CDS_PUBLIC_URL=https://cds.example.org HCC_CDS_DB_PASSWORD=… \
#   HCC_CDS_TRUSTED_ISSUERS='{"https://ehr.example.org": "https://ehr.example.org/.well-known/jwks.json"}' \
#   HCC_CDS_FHIR_ALLOWLIST='https://ehr.example.org/fhir/' docker compose up --build
#
# gunicorn listens on 0.0.0.0:8000 inside the compose network only (no port is published for it). Settings are
# validated at start: a bad HCC_CDS_* value stops the container with one line naming the variable.

# ---- builder: wheels for the project and all its dependencies ------------------------------------------
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY cards ./cards
RUN pip wheel --wheel-dir /wheels ".[postgres]"

# ---- runtime: wheels only, no compilers, no sources ---------------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HCC_CDS_HOST=0.0.0.0 \
    HCC_CDS_PORT=8000
RUN apt-get update \
 && apt-get install -y --no-install-recommends libjemalloc2 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 cds \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin cds
COPY --from=builder /wheels /wheels
RUN pip install --no-index --find-links=/wheels "hcc-second-line-cds[postgres]" && rm -rf /wheels
WORKDIR /app
COPY gunicorn.conf.py /app/gunicorn.conf.py
# jemalloc for the Python heap (README "Production"; deploy/stack.py allocator_env does the same for make
# prod-local), set after the build steps; the check fails the build where it cannot load (e.g. a kernel with
# pages larger than the library was built for) instead of the container at start.
ENV LD_PRELOAD=libjemalloc.so.2 \
    PYTHONMALLOC=malloc
RUN python -c "import sys; assert sys.getallocatedblocks() == 0 and 'libjemalloc' in open('/proc/self/maps').read()"
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('HCC_CDS_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]
CMD ["gunicorn", "service.wsgi:app", "-c", "gunicorn.conf.py"]
