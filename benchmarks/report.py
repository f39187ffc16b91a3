"""Results: one row per figure, each with its target, printed as a table and saved as JSON."""
from __future__ import annotations

import json
import math
import operator
from dataclasses import asdict, dataclass, field
from pathlib import Path

_OPS = {"<=": operator.le, ">=": operator.ge}


@dataclass
class Result:
    """One measured figure.

    - section: 'ops', 'train', 'grade' or 'book'
    - name: what was measured, with its sizes
    - device: 'cpu', 'cuda:0', ... ('-' where no torch device is involved)
    - value, unit: the figure ('x' for a ratio, 's' for seconds, 'ex/s' for examples per second)
    - target: e.g. '<= 2' or '>= 0.95'; None where the issue sets none (reported only)
    - detail: the raw numbers behind the figure (medians, samples, spread)
    """

    section: str
    name: str
    device: str
    value: float
    unit: str
    target: str | None = None
    detail: dict = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        """Whether the value meets its target; None without a target or a value."""
        if self.target is None or not math.isfinite(self.value):
            return None
        op, bound = self.target.split()
        return _OPS[op](self.value, float(bound))

    def as_dict(self) -> dict:
        return {**asdict(self), "met": self.met}


@dataclass
class Skipped:
    """A part that did not run (or failed, failed=True), and why."""

    section: str
    reason: str
    failed: bool = False


def _fmt(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "ex/s":
        return f"{value:,.0f} ex/s"
    if unit == "s":
        return f"{value:.3g} s" if value < 100 else f"{value:.0f} s"
    return f"{value:.3g} {unit}"


def table(results: list[Result], skipped: list[Skipped]) -> str:
    """A plain-text table: section, what, device, value, target, and whether it is met."""
    head = ("section", "benchmark", "device", "value", "target", "met")
    rows = [
        (
            r.section, r.name, r.device, _fmt(r.value, r.unit), r.target or "-",
            {True: "yes", False: "NO", None: ""}[r.met],
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = "  ".join("{:<%d}" % w for w in widths)
    out = [line.format(*head), line.format(*("-" * w for w in widths))]
    out += [line.format(*row) for row in rows]
    for s in skipped:
        out.append(f"{'FAILED' if s.failed else 'skipped'} {s.section}: {s.reason}")
    return "\n".join(out)


def write_json(path: Path, machine: dict, versions: dict, args: dict, results: list[Result],
               skipped: list[Skipped], started: str, seconds: float) -> None:
    """Save everything needed to compare two runs: machine, versions, options and results."""
    doc = {
        "started": started,
        "seconds": round(seconds, 1),
        "machine": machine,
        "versions": versions,
        "options": args,
        "results": [r.as_dict() for r in results],
        "skipped": [asdict(s) for s in skipped],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(path)
