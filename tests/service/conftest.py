"""Shared pytest fixtures for the service tests, including a real PostgreSQL (Debian's server, started here)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from deploy.stack import Postgres


@pytest.fixture
def fixed_now() -> datetime:
    return datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One throwaway PostgreSQL cluster for the session (initdb + pg_ctl; as the postgres user under root)."""
    directory = Path(tempfile.mkdtemp(prefix="hcc-cds-pg-"))
    server = Postgres(directory).start()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres: Postgres) -> str:
    """A new empty database on the session's cluster, as a SQLAlchemy URL."""
    if not postgres.running():
        postgres.start()
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres",
                         autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"
