"""Persistence through SQLAlchemy: feedback records and used JWT ids (``HCC_CDS_FEEDBACK_DB``).

SQLite by default, PostgreSQL by URL. No patient data is ever stored here.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, String, UniqueConstraint, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


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

    Holds no patient data: only the uuid, the service and the card type.
    """

    __tablename__ = "issued_card"

    card_uuid: Mapped[str] = mapped_column(String(80), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(80))
    card_type: Mapped[str] = mapped_column(String(80))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UsedJti(Base):
    """A JWT id seen once; a second use before ``expires_at`` is a replay (shared across workers)."""

    __tablename__ = "used_jti"

    key: Mapped[str] = mapped_column(String(600), primary_key=True)  # iss + "|" + jti
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


def make_engine(url: str) -> Engine:
    """Create the engine and the tables (idempotent)."""
    kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 15}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=15000")
            cursor.close()

    Base.metadata.create_all(engine)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False)
