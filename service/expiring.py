"""A small thread-safe map whose entries expire: the pathway app's sessions (service/app/sessions.py) and the demo
authorization server's launch ids, codes and tokens (demo/smart_auth.py). In memory, per process."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass
class _Entry(Generic[V]):
    value: V
    expires: float


class ExpiringMap(Generic[V]):
    """Entries live ``lifetime`` seconds from when they were put; expired ones are dropped on the next put, and
    when ``max_entries`` are live the oldest go first."""

    def __init__(self, lifetime: float, max_entries: int) -> None:
        self.lifetime, self.max_entries = lifetime, max_entries
        self._items: dict[str, _Entry[V]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, value: V) -> None:
        with self._lock:
            now = time.monotonic()
            for stale in [k for k, e in self._items.items() if e.expires <= now]:
                del self._items[stale]
            while len(self._items) >= self.max_entries:
                del self._items[next(iter(self._items))]
            self._items[key] = _Entry(value, now + self.lifetime)

    def get(self, key: str) -> V | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None or entry.expires <= time.monotonic():
                self._items.pop(key, None)
                return None
            return entry.value

    def pop(self, key: str) -> V | None:
        with self._lock:
            entry = self._items.pop(key, None)
        return entry.value if entry and entry.expires > time.monotonic() else None

    def keys(self) -> list[str]:
        """Every key held, expired ones too until the next put drops them."""
        with self._lock:
            return list(self._items)
