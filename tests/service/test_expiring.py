"""service.expiring.ExpiringMap: the pathway app's sessions and the demo authorization server's tables."""

from __future__ import annotations

import pytest

from service import expiring
from service.expiring import ExpiringMap


@pytest.fixture
def clock(monkeypatch):  # type: ignore[no-untyped-def]
    now = [1000.0]
    monkeypatch.setattr(expiring.time, "monotonic", lambda: now[0])
    return now


def test_an_entry_lives_its_lifetime_then_is_gone(clock) -> None:
    table: ExpiringMap[str] = ExpiringMap(lifetime=10, max_entries=5)
    table.put("a", "x")
    clock[0] += 9.9
    assert table.get("a") == "x"
    clock[0] += 0.1
    assert table.get("a") is None
    assert table.keys() == []  # get drops what it finds expired


def test_pop_returns_a_live_entry_once_and_never_an_expired_one(clock) -> None:
    table: ExpiringMap[str] = ExpiringMap(lifetime=10, max_entries=5)
    table.put("a", "x")
    table.put("b", "y")
    assert table.pop("a") == "x" and table.pop("a") is None
    clock[0] += 10
    assert table.pop("b") is None


def test_when_full_the_oldest_goes_first_and_expired_ones_are_dropped_on_put(clock) -> None:
    table: ExpiringMap[int] = ExpiringMap(lifetime=10, max_entries=3)
    for n, key in enumerate("abc"):
        table.put(key, n)
    table.put("d", 3)
    assert table.keys() == ["b", "c", "d"]
    clock[0] += 10
    table.put("e", 4)
    assert table.keys() == ["e"]
