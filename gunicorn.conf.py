"""gunicorn settings for hcc-second-line-cds: ``gunicorn service.wsgi:app -c gunicorn.conf.py``.

Every value comes from ``service/config.py`` (``HCC_CDS_HOST``/``PORT`` bind — loopback by default: the
production stack puts nginx in front, see deploy/; ``HCC_CDS_WORKERS``, ``HCC_CDS_THREADS``,
``HCC_CDS_FORWARDED_ALLOW_IPS``, ``HCC_CDS_LOG_LEVEL``). A bad value stops start-up here, in the master, with one
line naming the variable. The schema is migrated once, here, before any worker starts (a database that is down
does not stop start-up: workers migrate when it is back, under the same lock). The app writes its own JSON
access log, so gunicorn's access log is off.
"""

import multiprocessing
import os
import shutil
import tempfile

from service.config import env_or_exit, production_settings

_settings = env_or_exit(production_settings)

_host = _settings.host
if ":" in _host and not _host.startswith("["):  # IPv6 literal
    _host = f"[{_host}]"
bind = [f"{_host}:{_settings.port}"]

workers = _settings.workers or min(2 * multiprocessing.cpu_count() + 1, 8)
worker_class = "service.gunicorn_worker.JsonErrorWorker"  # gthread, with JSON error answers
threads = _settings.threads
timeout = 30
graceful_timeout = 10
keepalive = 5

# Request limits (bodies are limited by HCC_CDS_MAX_BODY_BYTES in the app).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 16384  # room for a large bearer JWT

# Only these proxies may set X-Forwarded-Proto/For.
forwarded_allow_ips = _settings.forwarded_allow_ips

accesslog = None  # the app logs one JSON line per request (service/logs.py)
errorlog = "-"
loglevel = _settings.log_level.lower()
preload_app = False  # each worker opens its own database pool
control_socket_disable = True  # gunicorn >= 25: no runtime control socket (read-only, non-root container)

# prometheus_client multiprocess mode: /metrics sums all workers (service/metrics.py).
_METRICS_PREFIX = "hcc-cds-metrics-"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=_METRICS_PREFIX)
_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]


def on_starting(server) -> None:
    """Once, in the master: clear old metric files and migrate the schema (not fatal when the database is down)."""
    for name in os.listdir(_metrics_dir):
        path = os.path.join(_metrics_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    from service.db import Database, DatabaseUnavailable

    database = Database(_settings.feedback_db, _settings.db_timeout)
    try:
        database.ensure_schema()
    except DatabaseUnavailable as exc:
        server.log.warning("database unavailable at start-up (%s): workers start without it, /readyz is 503 "
                           "until it answers", exc.reason)
    finally:
        database.engine.dispose()  # no connection of the master's is inherited by the workers


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the metrics directory made above (gunicorn may read this file more than once, so by its name)."""
    if os.path.basename(_metrics_dir).startswith(_METRICS_PREFIX):
        shutil.rmtree(_metrics_dir, ignore_errors=True)
