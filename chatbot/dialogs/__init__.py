"""The dialog engine and the flows it runs."""

from chatbot.dialogs.engine import Action, Engine, PatternTimeout, Reply, SessionState, Text, TurnResult
from chatbot.dialogs.environment import Environment, LocalEnvironment, ScriptedEnvironment
from chatbot.dialogs.flowset import BUILTIN_FLOWS, load_flows
from chatbot.dialogs.registry import Registry, action, condition

__all__ = [
    "Action",
    "BUILTIN_FLOWS",
    "Engine",
    "Environment",
    "LocalEnvironment",
    "PatternTimeout",
    "Registry",
    "Reply",
    "ScriptedEnvironment",
    "SessionState",
    "Text",
    "TurnResult",
    "action",
    "condition",
    "load_flows",
]
