"""Diagrams of a flow: Mermaid text, and SVG through Graphviz when it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess

from chatbot.dialogs.model import FlowSpec
from chatbot.errors import ChatbotError


#: What Mermaid reads as text in a label; anything else (a line break, ':', ';', '#', '"', '%') could
#: end the label or start a statement of its own, so it is written as an entity code (`#58;`).
_MERMAID_PLAIN_RE = re.compile(r"[^\w \[\].,-]")


def _mermaid_text(text: str) -> str:
    return _MERMAID_PLAIN_RE.sub(lambda match: f"#{ord(match.group())};", text)


def _label(transition) -> str:
    parts = [transition.trigger]
    if transition.conditions:
        parts.append(f"[{' and '.join(transition.conditions)}]")
    if transition.unless:
        parts.append(f"[not {' or '.join(transition.unless)}]")
    return " ".join(parts)


def _edges(flow: FlowSpec):
    for transition in flow.transitions:
        for source in flow.sources_of(transition):
            yield source, transition.dest or source, _label(transition)
    for state in flow.states.values():
        if state.goto:
            yield state.name, f"flow {state.goto}", "goto"


def mermaid(flow: FlowSpec) -> str:
    """A Mermaid `stateDiagram-v2` of one flow; jumps to other flows end in a state named after the target."""
    lines = ["stateDiagram-v2", f"    [*] --> {flow.initial}"]
    external: dict[str, str] = {}
    for source, dest, label in _edges(flow):
        if dest.startswith("flow "):
            if dest not in external:
                node = "goto_" + dest[5:].replace(":", "_")
                while node in flow.states or node in external.values():
                    node += "_"
                external[dest] = node
            dest = external[dest]
        lines.append(f"    {source} --> {dest}: {_mermaid_text(label)}")
    for target, node in external.items():
        lines.append(f'    state "{_mermaid_text(target)}" as {node}')
    for state in flow.states.values():
        if state.final:
            lines.append(f"    {state.name} --> [*]")
    return "\n".join(lines) + "\n"


def dot(flow: FlowSpec) -> str:
    """The same graph in Graphviz's DOT language."""
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    lines = [f"digraph {quote(flow.name)} {{", "  rankdir=LR;", '  node [shape=box, style=rounded];',
             '  __start [shape=point];', f"  __start -> {quote(flow.initial)};"]
    for source, dest, label in _edges(flow):
        shape = ' [shape=note]' if dest.startswith("flow ") else ""
        if shape:
            lines.append(f"  {quote(dest)}{shape};")
        lines.append(f"  {quote(source)} -> {quote(dest)} [label={quote(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def graphviz_available() -> bool:
    return shutil.which("dot") is not None


def svg(flow: FlowSpec) -> bytes:
    """Render with Graphviz's `dot`; raises FileNotFoundError when it is not installed."""
    executable = shutil.which("dot")
    if executable is None:
        raise FileNotFoundError("dot")
    done = subprocess.run([executable, "-Tsvg"], input=dot(flow).encode(), capture_output=True)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise ChatbotError(f"graphviz: dot failed: {reason}")
    return done.stdout
