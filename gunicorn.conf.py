"""gunicorn settings for hcc-second-line-cds: ``gunicorn service.wsgi:app -c gunicorn.conf.py``.

Environment: ``HCC_CDS_HOST`` / ``HCC_CDS_PORT`` (bind; the Dockerfile sets 0.0.0.0:8080),
``HCC_CDS_WORKERS`` (default 2 x cores + 1, at most 8), ``HCC_CDS_THREADS`` (default 4),
``HCC_CDS_FORWARDED_ALLOW_IPS`` (proxies whose X-Forwarded-* headers are trusted; default loopback only),
``HCC_CDS_LOG_LEVEL``. The app writes its own JSON access log, so gunicorn's access log is off.
"""

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


_host = os.environ.get("HCC_CDS_HOST", "127.0.0.1").strip() or "127.0.0.1"
_port = _int("HCC_CDS_PORT", 8080)
if ":" in _host and not _host.startswith("["):  # IPv6 literal
    _host = f"[{_host}]"
bind = [f"{_host}:{_port}"]

workers = _int("HCC_CDS_WORKERS", min(2 * multiprocessing.cpu_count() + 1, 8))
worker_class = "gthread"
threads = _int("HCC_CDS_THREADS", 4)
timeout = 30
graceful_timeout = 10
keepalive = 5

# Request limits (bodies are limited by HCC_CDS_MAX_BODY_BYTES in the app).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 16384  # room for a large bearer JWT

# Only these proxies may set X-Forwarded-Proto/For (the scheme matters for the JWT aud check).
forwarded_allow_ips = (
    os.environ.get("HCC_CDS_FORWARDED_ALLOW_IPS") or os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1,::1"
)

accesslog = None  # the app logs one JSON line per request (service/logs.py)
errorlog = "-"
loglevel = os.environ.get("HCC_CDS_LOG_LEVEL", "info").lower()
preload_app = False  # each worker opens its own database pool
control_socket_disable = True  # gunicorn >= 25: no runtime control socket (read-only, non-root container)
