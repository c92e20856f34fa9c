"""The effective configuration of a run (what is checked, what fails the run)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Config:
    steps: int | str = "all"  # backward calls checked: the first N, or "all"
    fail_on: str = "error"  # error | warning | never
    zero_atol: float = 0.0
    expect: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)

    def checks_step(self, index: int) -> bool:
        return self.steps == "all" or index < int(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
