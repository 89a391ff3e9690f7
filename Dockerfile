# hcc-second-line-cds — production image: gunicorn + the CDS Hooks service, non-root.
#
#   docker build -t hcc-second-line-cds .
#   docker run -p 8080:8080 \
#     -e HCC_CDS_TRUSTED_ISSUERS='{"https://ehr.example.org": "https://ehr.example.org/.well-known/jwks.json"}' \
#     -e HCC_CDS_FHIR_ALLOWLIST='https://ehr.example.org/fhir/' \
#     -e HCC_CDS_FEEDBACK_DB='postgresql+psycopg://cds:secret@db:5432/cds' \
#     hcc-second-line-cds
#
# Production MUST set:
#   HCC_CDS_TRUSTED_ISSUERS  JSON object iss -> JWKS URL or file (JWT auth is required by default; with no
#                            trusted issuer every service call is rejected with 401)
#   HCC_CDS_FHIR_ALLOWLIST   comma-separated FHIR base-URL prefixes the service may call
#   HCC_CDS_FEEDBACK_DB      PostgreSQL URL (postgresql+psycopg://…), shared by all workers and replicas for
#                            feedback and JWT replay records. The SQLite default below only suits a single
#                            container and is lost with it.
# and usually HCC_CDS_PUBLIC_URL (behind a proxy) and HCC_CDS_CORS_ORIGINS.

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
    HCC_CDS_PORT=8080 \
    HCC_CDS_FEEDBACK_DB=sqlite:////app/var/hcc-cds.sqlite3
RUN groupadd --system --gid 10001 cds \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin cds
COPY --from=builder /wheels /wheels
RUN pip install --no-index --find-links=/wheels "hcc-second-line-cds[postgres]" && rm -rf /wheels
WORKDIR /app
COPY gunicorn.conf.py /app/gunicorn.conf.py
RUN mkdir -p /app/var && chown 10001:10001 /app/var
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('HCC_CDS_PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]
CMD ["gunicorn", "service.wsgi:app", "-c", "gunicorn.conf.py"]
