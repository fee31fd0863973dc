"""The figures of a run: collected by section and row, printed as tables, saved as JSON.

Each cell is the median of the repeated runs with their range, `median [min–max]`.
The last column is chatbot / echo, run by run (runs of the two servers are
interleaved, so a pair shares the machine's state of the moment).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from bench.load.stats import Series, paired_ratios

KINDS = ("echo", "chatbot")


@dataclass
class Row:
    label: str
    digits: int = 0
    ratio: bool = False
    series: dict[str, Series] = field(default_factory=dict)

    def add(self, kind: str, value: float | None) -> None:
        self.series.setdefault(kind, Series()).add(value)


@dataclass
class Section:
    title: str
    note: str = ""
    rows: dict[str, Row] = field(default_factory=dict)

    def row(self, label: str, *, digits: int = 0, ratio: bool = False) -> Row:
        if label not in self.rows:
            self.rows[label] = Row(label, digits, ratio)
        return self.rows[label]

    def add(self, label: str, kind: str, value: float | None, *, digits: int = 0, ratio: bool = False) -> None:
        self.row(label, digits=digits, ratio=ratio).add(kind, value)


@dataclass
class Check:
    name: str
    verdict: str  # PASS, MISS or "not measured"
    detail: str


class Results:
    def __init__(self) -> None:
        self.sections: dict[str, Section] = {}
        self.checks: list[Check] = []
        self.notes: list[str] = []
        self.blocks: list[tuple[str, str]] = []  # (title, preformatted text), e.g. the profile

    def section(self, title: str, note: str = "") -> Section:
        if title not in self.sections:
            self.sections[title] = Section(title, note)
        return self.sections[title]

    def series(self, title: str, label: str, kind: str) -> Series | None:
        section = self.sections.get(title)
        row = section.rows.get(label) if section else None
        return row.series.get(kind) if row else None

    def to_json(self) -> dict:
        return {
            "sections": {title: {"note": s.note, "rows": {label: {kind: series.values for kind, series
                                                                  in row.series.items()}
                                                          for label, row in s.rows.items()}}
                         for title, s in self.sections.items()},
            "targets": [vars(check) for check in self.checks],
            "notes": self.notes,
            "blocks": dict(self.blocks),
        }

    def save(self, path) -> None:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(self.to_json(), out, indent=1)


def cell(series: Series | None, digits: int, *, percent: bool = False) -> str:
    if series is None or series.median is None:
        return "—"
    scale, suffix = (100, "%") if percent else (1, "")

    def number(value: float) -> str:
        return f"{value * scale:,.{digits}f}{suffix}"

    if len(series.known) == 1 or series.low == series.high:
        return number(series.median)
    return f"{number(series.median)} [{number(series.low)}–{number(series.high)}]"


def render(results: Results) -> str:
    lines: list[str] = []
    for section in results.sections.values():
        lines.append("")
        lines.append(f"== {section.title}")
        if section.note:
            lines.append(f"   {section.note}")
        width = max([len(label) for label in section.rows] + [10])
        header = f"   {'':<{width}}  {'echo':>26}  {'chatbot':>26}  {'chatbot/echo':>22}"
        lines.append(header)
        for row in section.rows.values():
            echo, chatbot = row.series.get("echo"), row.series.get("chatbot")
            ratio = ""
            if row.ratio and echo is not None and chatbot is not None:
                ratio = cell(paired_ratios(chatbot, echo), 1, percent=True)
            lines.append(f"   {row.label:<{width}}  {cell(echo, row.digits):>26}  {cell(chatbot, row.digits):>26}"
                         f"  {ratio:>22}".rstrip())
    for title, text in results.blocks:
        lines += ["", f"== {title}", *(f"   {line}" if line else "" for line in text.splitlines())]
    if results.checks:
        lines.append("")
        lines.append("== targets (reported, never enforced)")
        for check in results.checks:
            lines.append(f"   {check.verdict:<12} {check.name}: {check.detail}")
    for note in results.notes:
        lines.append(f"   note: {note}")
    return "\n".join(lines)
