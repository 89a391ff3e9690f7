"""Shared pytest fixtures for the service tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest


@pytest.fixture
def fixed_now() -> datetime:
    return datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
