"""Start helper server processes on 127.0.0.1 for integration tests (and the benchmark) and stop them."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EHR_SERVER = HERE / "ehr_fhir_process.py"
MANGLING_PROXY = HERE / "mangling_proxy.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server_process(script: Path, *args: str, port: int | None = None) -> Iterator[str]:
    """Run ``script PORT *args`` and yield its FHIR base ``http://127.0.0.1:PORT/fhir`` once it answers."""
    port = port or free_port()
    process = subprocess.Popen([sys.executable, str(script), str(port), *args], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"{base}/metadata", timeout=0.5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{script.name} did not start")
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
