"""The evaluation context: the time of evaluation and the site policy, passed as one value (architecture.md §2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from .policy import Policy, default_policy


@dataclass(frozen=True)
class EvaluationContext:
    """``now`` (time-zone aware) and the policy in force; the core never reads a clock."""

    now: datetime
    policy: Policy = field(default_factory=default_policy)

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            object.__setattr__(self, "now", self.now.replace(tzinfo=UTC))

    @property
    def today(self) -> date:
        return self.now.date()

    @property
    def current_days(self) -> int:
        return self.policy.current_days
