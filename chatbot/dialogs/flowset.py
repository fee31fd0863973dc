"""Loading the built-in flows and a bot author's folder as one checked set.

Every problem is reported in one pass: a file that cannot be parsed is
reported and left out, and the flows that did parse are still validated, so
a bot author sees all their mistakes at once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from chatbot.dialogs.loader import parse_flow
from chatbot.dialogs.model import FlowSpec
from chatbot.dialogs.registry import Registry
from chatbot.dialogs.validate import validate_flows
from chatbot.dialogs.yamlsource import line_starts
from chatbot.errors import FlowError, FlowSetError

BUILTIN_FLOWS = Path(__file__).parent / "flows"
#: The `name:` line of a file that cannot be parsed, so that gotos to it are not reported again.
NAME_LINE_RE = re.compile(r"^name:\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)


def display_path(path: Path) -> str:
    """A path as a person would type it: relative to the working directory when inside it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if relative.startswith("..") else relative


@dataclass
class FolderLoad:
    """What one folder gave: the flows that parsed, and what went wrong."""

    flows: dict[str, FlowSpec] = field(default_factory=dict)
    problems: list[FlowError] = field(default_factory=list)
    #: Flows that could not be parsed at all, by their `name:` line or else their file stem.
    unparsed: set[str] = field(default_factory=set)
    #: Flows that parsed with shape problems: parts of them may be missing.
    incomplete: set[str] = field(default_factory=set)


def flow_files(folder: Path) -> list[Path]:
    """The `*.yaml` and `*.yml` files of a folder (`PIZZA.YAML` too), but not hidden ones.

    Editors leave their lock files there (`.#chat.yaml`, often a link to nowhere).
    """
    return sorted(path for path in folder.iterdir()
                  if path.suffix.lower() in (".yaml", ".yml") and not path.name.startswith("."))


def _unreadable(shown: str, err: OSError | UnicodeDecodeError) -> FlowError:
    """A file that cannot be read; one that is not UTF-8 at the line of its first bad byte, as editors count."""
    if isinstance(err, UnicodeDecodeError):
        before = err.object[:err.start].decode("utf-8")
        return FlowError(shown, len(line_starts(before)), "",
                         f"cannot read: not UTF-8 (byte 0x{err.object[err.start]:02x})")
    return FlowError(shown, None, "", f"cannot read: {err}")


def load_folder(folder: Path) -> FolderLoad:
    result = FolderLoad()
    for path in flow_files(folder):
        shown = display_path(path)
        try:
            # decoded whole, so that a decoding error's position counts from the start of the file
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as err:
            result.problems.append(_unreadable(shown, err))
            result.unparsed.add(path.stem)
            continue
        # line breaks as text mode reads them: a flow's version is the hash of this text
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        flow, found = parse_flow(text, shown)
        result.problems.extend(found)
        if flow is None:
            named = NAME_LINE_RE.search(text)
            result.unparsed.add(named.group(1) if named else path.stem)
            continue
        if flow.name in result.flows:
            result.problems.append(FlowError(shown, flow.lines.get("name", 1), "name",
                                             f"flow '{flow.name}' is also defined in {result.flows[flow.name].path}"))
            continue
        if found:
            result.incomplete.add(flow.name)
        result.flows[flow.name] = flow
    return result


def load_flows(folder: Path | None, registry: Registry, *, builtin: Path = BUILTIN_FLOWS) -> dict[str, FlowSpec]:
    """The built-in flows, replaced or extended by those of `folder`; raises FlowSetError listing every problem."""
    if folder is not None and not folder.is_dir():
        raise FlowSetError([FlowError(display_path(folder), None, "", "no such folder")])
    loads = [load_folder(builtin)] + ([load_folder(folder)] if folder is not None else [])
    flows: dict[str, FlowSpec] = {}
    problems: list[FlowError] = []
    unparsed: set[str] = set()
    incomplete: set[str] = set()
    for load in loads:
        flows.update(load.flows)  # an author's flow replaces the built-in of the same name
        problems += load.problems
        unparsed |= load.unparsed
        incomplete = (incomplete - set(load.flows)) | load.incomplete
    # A flow that could not be parsed may have been meant to replace a built-in one;
    # the built-in stays and is checked, the broken file is reported above.
    problems += validate_flows(flows, registry, unparsed=frozenset(unparsed - set(flows)),
                               incomplete=frozenset(incomplete))
    if problems:
        raise FlowSetError(problems)
    return flows
