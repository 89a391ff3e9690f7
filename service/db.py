"""Persistence through SQLAlchemy: feedback records, issued cards and used JWT ids (``HCC_CDS_FEEDBACK_DB``).

SQLite by default, PostgreSQL by URL. No patient data is ever stored here. The schema is made by Alembic
migrations (``service/migrations``; ``hcc-cds db upgrade``), run under a lock (a PostgreSQL advisory lock, or an
``flock`` beside the SQLite file) so that any number of workers starting at once migrate exactly once.

The database is not on the critical path of a hook call (service-contract.md §11): :class:`Database` bounds every
statement by ``HCC_CDS_DB_TIMEOUT`` and, after a failure, reports itself unavailable for ``RETRY_SECONDS`` so
calls go on without it instead of each waiting for a dead server; it recovers by itself, without a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import DateTime, Integer, String, UniqueConstraint, create_engine, delete, event, inspect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
RETRY_SECONDS = 2.0  # after a failure, the database is left alone this long
PURGE_INTERVAL = 60.0  # seconds between two opportunistic purges of expired records (per process)
_ADVISORY_LOCK = 0x4843_4344  # "HCCD": the PostgreSQL advisory lock key of schema migrations


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class FeedbackRecord(Base):
    """One clinician outcome for one card (CDS Hooks 2.0 feedback); idempotent on card + outcome."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("card_uuid", "outcome", name="uq_feedback_card_outcome"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_id: Mapped[str] = mapped_column(String(80))
    card_uuid: Mapped[str] = mapped_column(String(80), index=True)
    card_type: Mapped[str] = mapped_column(String(80))  # e.g. second-line-options, order-check:lenvatinib-dose
    outcome: Mapped[str] = mapped_column(String(20))  # accepted | overridden
    accepted_suggestions: Mapped[str | None] = mapped_column(String(800), nullable=True)
    override_system: Mapped[str | None] = mapped_column(String(200), nullable=True)
    override_code: Mapped[str | None] = mapped_column(String(80), nullable=True)
    outcome_timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IssuedCard(Base):
    """Card uuid -> card type, recorded when a card is issued, so feedback can be reported per check.

    Holds no patient data: only the uuid, the service and the card type. Purged after ``ISSUED_CARD_LIFETIME``.
    """

    __tablename__ = "issued_card"

    card_uuid: Mapped[str] = mapped_column(String(80), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(80))
    card_type: Mapped[str] = mapped_column(String(80))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class UsedJti(Base):
    """A JWT id seen once; a second use before ``expires_at`` is a replay (shared across workers)."""

    __tablename__ = "used_jti"

    key: Mapped[str] = mapped_column(String(600), primary_key=True)  # iss + "|" + jti
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


ISSUED_CARD_LIFETIME = timedelta(days=30)  # feedback on a card older than this is reported as card type "unknown"


class DatabaseUnavailable(Exception):
    """The database cannot be used now; ``reason`` is a short code (an exception class name), safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def make_engine(url: str, timeout: float = 2.0) -> Engine:
    """An engine whose connects, statements and lock waits give up after ``timeout`` seconds. Connects lazily."""
    kwargs: dict = {"pool_pre_ping": True}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": timeout}
        if parsed.database in (None, "", ":memory:"):
            kwargs["poolclass"] = StaticPool  # one in-memory database shared by every thread
    elif parsed.get_backend_name() == "postgresql":
        ms = int(timeout * 1000)
        kwargs["connect_args"] = {"connect_timeout": max(1, round(timeout)),
                                  "options": f"-c statement_timeout={ms} -c lock_timeout={ms}"}
        kwargs["pool_timeout"] = timeout
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            if parsed.database not in (None, "", ":memory:"):
                # WAL with synchronous=NORMAL: a commit appends to the log without an fsync (fsync at checkpoints);
                # the database stays consistent, and a power cut may lose the last commits' bookkeeping. An fsync
                # per hook call cost 5 ms at the median and 23 ms at p95 here.
                # Several workers opening a new file at once: SQLite refuses all but one switch to WAL at once,
                # "database is locked", without waiting (its deadlock rule). WAL is a property of the file, and
                # every connection asks for it, so the one that got through has switched the file.
                with contextlib.suppress(sqlite3.OperationalError):
                    cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            cursor.close()

    return engine


def make_session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False)


# --------------------------------------------------------------------------------------------------------
# Migrations


@contextlib.contextmanager
def _migration_lock(engine: Engine, connection: Connection) -> Iterator[None]:
    """Serialise migrations across processes: PostgreSQL advisory lock, or flock beside the SQLite file."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy import text

        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_LOCK})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_LOCK})
            connection.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        yield
        return
    with open(f"{database}.migrate-lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alembic_config(connection: Connection | None = None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> None:
    """Migrate the schema to the newest revision, once, whoever else is starting at the same time.

    A database whose tables were made by ``create_all`` before migrations existed (no ``alembic_version``) is
    stamped at the first revision, which made exactly those tables, then upgraded.
    """
    from alembic import command

    with engine.connect() as connection, _migration_lock(engine, connection):
        config = _alembic_config(connection)
        tables = set(inspect(connection).get_table_names())
        if "alembic_version" not in tables and {"feedback", "issued_card", "used_jti"} <= tables:
            command.stamp(config, "0001")
        command.upgrade(config, "head")
        connection.commit()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory.from_config(_alembic_config()).get_current_head())


# --------------------------------------------------------------------------------------------------------
# Purge


def purge_expired(session: Session, now: datetime | None = None) -> tuple[int, int]:
    """Delete JWT ids past their expiry and issued-card records past ``ISSUED_CARD_LIFETIME``: (jti, cards)."""
    now = now or utcnow()
    jti = session.execute(delete(UsedJti).where(UsedJti.expires_at < now)).rowcount
    cards = session.execute(delete(IssuedCard).where(IssuedCard.issued_at < now - ISSUED_CARD_LIFETIME)).rowcount
    return int(jti or 0), int(cards or 0)


# --------------------------------------------------------------------------------------------------------
# Availability


class Database:
    """The engine, sessions, and whether the database can be used right now (thread-safe)."""

    def __init__(self, url: str, timeout: float = 2.0, *, migrate: bool = True) -> None:
        self.engine = make_engine(url, timeout)
        self.sessions = make_session_factory(self.engine)
        self._migrate = migrate
        self._lock = threading.Lock()
        self._schema_ready = False
        self._down_until = float("-inf")
        self._last_purge = float("-inf")
        self.last_error: str | None = None

    def _failed(self, exc: BaseException) -> DatabaseUnavailable:
        from .metrics import DATABASE_ERRORS

        with self._lock:
            self.last_error = type(exc).__name__
            self._down_until = time.monotonic() + RETRY_SECONDS
        DATABASE_ERRORS.labels(reason=self.last_error).inc()
        return DatabaseUnavailable(self.last_error)

    def purge_if_due(self) -> None:
        """At most once per ``PURGE_INTERVAL`` per process, delete expired JWT ids and issued-card records (best
        effort: a failure is retried by a later call)."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_purge < PURGE_INTERVAL:
                return
            self._last_purge = now
        try:
            with self.transaction() as session:
                purge_expired(session)
        except (DatabaseUnavailable, IntegrityError):
            with self._lock:
                self._last_purge = float("-inf")

    def ensure_schema(self) -> None:
        """Migrate once per process (a no-op when another process already did); DatabaseUnavailable on failure."""
        if self._schema_ready:
            return
        self.check_circuit()
        try:
            if self._migrate:
                upgrade(self.engine)
            self._schema_ready = True
        except Exception as exc:  # driver, lock or migration error: not ready, try again later
            raise self._failed(exc) from None

    def check_circuit(self) -> None:
        """DatabaseUnavailable while a recent failure says the database is down."""
        if time.monotonic() < self._down_until:
            raise DatabaseUnavailable(self.last_error or "unavailable")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in a transaction. IntegrityError passes through (the database works); every other database
        error, and a recent failure, raise DatabaseUnavailable at once."""
        self.ensure_schema()
        try:
            with self.sessions() as session, session.begin():
                yield session
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise self._failed(exc) from None
        with self._lock:
            self.last_error = None

    def probe(self) -> str | None:
        """For /readyz: None when the database answers and the schema is current, else the reason."""
        from sqlalchemy import text

        try:
            self._down_until = float("-inf")  # a probe always really tries
            self.ensure_schema()
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except DatabaseUnavailable as exc:
            return exc.reason
        except SQLAlchemyError as exc:
            return self._failed(exc).reason
        with self._lock:
            self.last_error = None
        return None
