"""Loading the built-in flows and a bot author's folder as one checked set."""

from __future__ import annotations

import os
from pathlib import Path

from chatbot.dialogs.loader import parse_flow
from chatbot.dialogs.model import FlowSpec
from chatbot.dialogs.registry import Registry
from chatbot.dialogs.validate import validate_flows
from chatbot.errors import FlowError, FlowSetError

BUILTIN_FLOWS = Path(__file__).parent / "flows"


def display_path(path: Path) -> str:
    """A path as a person would type it: relative to the working directory when inside it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:
        return str(path)


def load_folder(folder: Path, problems: list[FlowError]) -> dict[str, FlowSpec]:
    flows: dict[str, FlowSpec] = {}
    for path in sorted(folder.glob("*.y*ml")):
        shown = display_path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            problems.append(FlowError(shown, None, "", f"cannot read: {err}"))
            continue
        flow, found = parse_flow(text, shown)
        problems.extend(found)
        if flow is None:
            continue
        if flow.name in flows:
            problems.append(FlowError(shown, flow.lines.get("name", 1), "name",
                                      f"flow '{flow.name}' is also defined in {flows[flow.name].path}"))
            continue
        flows[flow.name] = flow
    return flows


def load_flows(folder: Path | None, registry: Registry, *, builtin: Path = BUILTIN_FLOWS) -> dict[str, FlowSpec]:
    """The built-in flows, replaced or extended by those of `folder`; raises FlowSetError."""
    problems: list[FlowError] = []
    flows = load_folder(builtin, problems)
    if folder is not None:
        if not folder.is_dir():
            raise FlowSetError([FlowError(display_path(folder), None, "", "no such folder")])
        flows.update(load_folder(folder, problems))
    if not problems:
        problems = validate_flows(flows, registry)
    if problems:
        raise FlowSetError(problems)
    return flows
