"""The production stack on one machine from Debian packages: PostgreSQL, gunicorn (the shipped config), nginx.

    python -m deploy.stack [--port 8443] [--dir DIR]      # what `make prod-local` runs; Ctrl-C stops it all

Every part listens on loopback only. PostgreSQL gets a throwaway cluster in DIR (``initdb`` from
/usr/lib/postgresql/*/bin, run as the ``postgres`` user when started as root, since PostgreSQL refuses root);
gunicorn runs ``service.wsgi:app -c gunicorn.conf.py`` with HCC_CDS_FEEDBACK_DB pointing at it; nginx renders
deploy/nginx/hcc-cds.conf.template. The integration tests (tests/service/test_production.py) start the same
classes. Settings not given in the environment get local defaults (auth off unless HCC_CDS_AUTH is set).
gunicorn's Python heap is jemalloc's when Debian's libjemalloc2 is installed (:func:`allocator_env`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes.util
import glob
import os
import pwd
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "hcc-cds.conf.template"
NGINX_ERRORS = ROOT / "deploy" / "nginx" / "errors"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def allocator_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment that gives a Python process jemalloc for its heap (README "Performance"): ``{}`` when
    ``environ`` already sets ``LD_PRELOAD`` or ``PYTHONMALLOC`` (the operator's choice, taken whole) or when Debian's
    libjemalloc2 is not installed (CPython's own allocator then).

    ``PYTHONMALLOC=malloc`` sends CPython's small objects to ``malloc``, and ``LD_PRELOAD`` makes that jemalloc's.
    Under CPython's allocator, parsing and reading a 2,000-Observation request takes 10-13 ms in a worker that has
    served a few dozen calls, 4-5 ms in a fresh process (freed memory comes back scattered); under jemalloc about
    7 ms in both, and a whole call is about 20 % faster. The Dockerfile sets the same two variables."""
    if "LD_PRELOAD" in environ or "PYTHONMALLOC" in environ:
        return {}
    library = ctypes.util.find_library("jemalloc")
    return {"LD_PRELOAD": library, "PYTHONMALLOC": "malloc"} if library else {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, process: subprocess.Popen | None, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def _as_root() -> bool:
    return os.geteuid() == 0


class Postgres:
    """A throwaway PostgreSQL cluster in ``directory`` on 127.0.0.1:``port`` (Debian's server binaries)."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
        if not found:
            raise RuntimeError("PostgreSQL server not installed (apt-get install postgresql)")
        self.bin = Path(found[-1]).parent
        self.directory = directory
        self.data = directory / "pgdata"
        self.port = port or free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if _as_root():
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=60)

    def start(self) -> Postgres:
        self.directory.mkdir(parents=True, exist_ok=True)
        if _as_root():
            user = pwd.getpwnam("postgres")
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            for parent in self.directory.parents:  # postgres must be able to reach its directory
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "postgres.log"), "-w", "-t", "30",
                  "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory}"
                        " -c fsync=off -c max_connections=200",
                  "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0


class Gunicorn:
    """``gunicorn service.wsgi:app -c gunicorn.conf.py`` as a child process, stderr to ``log``."""

    def __init__(self, env: Mapping[str, str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("HCC_CDS_")}
        self.env = {**inherited, **allocator_env(inherited), "HCC_CDS_HOST": "127.0.0.1",
                    "HCC_CDS_PORT": str(self.port), **env}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log = log
        self.process: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Gunicorn:
        gunicorn = Path(sys.executable).with_name("gunicorn")
        handle = self.log.open("ab")
        self.process = subprocess.Popen([str(gunicorn), "service.wsgi:app", "-c", "gunicorn.conf.py"],
                                        cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        handle.close()
        _wait_port(self.port, self.process, timeout, "gunicorn")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # every worker booted (each answers /healthz)
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError("gunicorn did not answer /healthz")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def render_nginx(prefix: Path, listen: str, upstream: str, worker_processes: int = 1) -> Path:
    """Write nginx.conf (and the JSON error pages) into ``prefix``; return the config path."""
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi", "_errors"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    for page in NGINX_ERRORS.glob("*.json"):
        shutil.copy(page, prefix / "_errors" / page.name)
    user_line = ""
    if _as_root():  # nginx's workers then run as www-data, which must reach the prefix
        user_line = "user www-data;"
        for path in [prefix, *prefix.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
            if path.name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                shutil.chown(path, "www-data")
    text = string.Template(NGINX_TEMPLATE.read_text(encoding="utf-8")).safe_substitute(
        user_line=user_line, worker_processes=str(worker_processes), prefix=str(prefix),
        error_log=str(prefix / "error.log"), upstream=upstream, listen=listen)
    config = prefix / "nginx.conf"
    config.write_text(text, encoding="utf-8")
    return config


class Nginx:
    """nginx from Debian in the foreground, in front of ``upstream`` (host:port), on 127.0.0.1:``port``."""

    def __init__(self, prefix: Path, upstream: str, port: int | None = None, worker_processes: int = 1) -> None:
        self.prefix = prefix
        self.port = port or free_port()
        self.upstream = upstream
        self.worker_processes = worker_processes
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Nginx:
        if not Path(NGINX).exists():
            raise RuntimeError("nginx not installed (apt-get install nginx)")
        config = render_nginx(self.prefix, f"127.0.0.1:{self.port}", self.upstream, self.worker_processes)
        self.process = subprocess.Popen([NGINX, "-p", str(self.prefix), "-c", str(config), "-e",
                                         str(self.prefix / "error.log"), "-g", "daemon off;"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        _wait_port(self.port, self.process, 20, "nginx")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@contextlib.contextmanager
def production_stack(directory: Path, env: Mapping[str, str], port: int | None = None,
                     workers: int = 2) -> Iterator[tuple[Postgres, Gunicorn, Nginx]]:
    """PostgreSQL + gunicorn + nginx; yields the three; stops them in reverse order."""
    postgres = Postgres(directory / "postgres").start()
    gunicorn = nginx = None
    try:
        gunicorn = Gunicorn({"HCC_CDS_FEEDBACK_DB": postgres.url, "HCC_CDS_WORKERS": str(workers), **env},
                            directory / "gunicorn.log").start()
        nginx = Nginx(directory / "nginx", f"127.0.0.1:{gunicorn.port}", port).start()
        yield postgres, gunicorn, nginx
    finally:
        for part in (nginx, gunicorn):
            if part is not None:
                part.stop()
        postgres.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8443, help="nginx port on 127.0.0.1 (default 8443)")
    parser.add_argument("--dir", help="state directory (default: a new temporary one)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="hcc-cds-prod-"))
    env = {"HCC_CDS_AUTH": os.environ.get("HCC_CDS_AUTH", "off"),
           "HCC_CDS_PUBLIC_URL": os.environ.get("HCC_CDS_PUBLIC_URL", f"http://127.0.0.1:{args.port}")}
    env.update({k: v for k, v in os.environ.items() if k.startswith("HCC_CDS_")})
    try:
        with production_stack(directory, env, args.port, args.workers) as (postgres, _gunicorn, nginx):
            print(f"hcc-second-line-cds production stack: {nginx.url}/cds-services (nginx -> gunicorn -> "
                  f"PostgreSQL on 127.0.0.1:{postgres.port}); state in {directory}; Ctrl-C stops it", flush=True)
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except RuntimeError as exc:
        print(f"prod-local: {exc} (logs in {directory})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
