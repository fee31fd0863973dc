"""Whatever people type or press, the engine answers and stays in a declared state.

Random sequences of texts (Cyrillic, emoji, lone surrogates, commands, very
long or empty text) and actions (the flows' own buttons, the page's global
actions, garbage) run through every built-in flow and the example bot's flow,
from a new session and from sessions put directly into each state.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbot.dialogs import Action, Registry, SessionState, Text
from chatbot.dialogs.engine import GLOBAL_ACTIONS
from tests.engine_helpers import MemoryWorld, make_engine

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pizza"


def example_engine():
    registry = Registry.with_builtins()
    registry.load(str(EXAMPLE / "pizza_actions.py"))
    return make_engine(EXAMPLE / "flows", registry)


ENGINES = {"built-in": make_engine(), "example": example_engine()}

PHRASES = [
    "hello", "Привет!", "log in", "войти", "register", "регистрация", "cancel", "отмена", "what can you do",
    "что ты умеешь", "who am i", "call me Ann", "зови меня Аня", "what is my name", "what time is it",
    "tell me a joke", "log out", "выйти", "👋", "🙏🙏", "ann", "correct horse", "pizza", "large", "2",
    "three", "ann@example.com", "not an email@", "yes", "no", "да", "нет", "🍕", "\u0000", " ", "\n",
    "I want a PIZZA please", "ＦＵＬＬ ＷＩＤＴＨ", "ё" + "\u0308",
    "\ud800", "call me \udcff", "\udc80 hello", "зови меня \ud83d",  # lone surrogates
]
COMMANDS = ["/help", "/start", "/login", "/register", "/logout", "/lang ru", "/lang en", "/lang", "/lang xx",
            "/LANG RU", "/pizza", "/nope", "/", "//", "/help me"]


def _every_button_action() -> list[str]:
    actions = set()
    for engine in ENGINES.values():
        for flow in engine.flows.values():
            for state in flow.states.values():
                actions.update(button.action for button in state.buttons)
    return sorted(actions)


texts = st.one_of(
    st.sampled_from(PHRASES + COMMANDS),
    st.text(max_size=40),
    st.text(st.characters(codec=None, categories=("Cs",)), min_size=1, max_size=5),  # lone surrogates
    st.text(st.characters(codec=None, categories=("Cs", "So", "Lo", "Zs", "P")), max_size=20),
    st.text(st.characters(min_codepoint=0x400, max_codepoint=0x4FF), max_size=30),  # Cyrillic
    st.builds(lambda word, times: (word + " ") * times, st.sampled_from(["pizza", "привет", "🍕"]),
              st.integers(500, 3000)),  # very long
    st.builds(lambda command, rest: f"{command} {rest}", st.sampled_from(COMMANDS), st.text(max_size=10)),
    st.just(""),
)
actions = st.one_of(
    st.sampled_from(_every_button_action() + list(GLOBAL_ACTIONS)
                    + ["lang:ru", "lang:en", "lang:xx", "lang:", "flow:pizza", "flow:chat", "flow:", "text",
                       "to_chat", "trigger", "say", "state"]),
    st.text(max_size=20),
)
events = st.lists(st.one_of(texts.map(Text), actions.map(Action)), max_size=12)


def _states(engine) -> list[tuple[str, str]]:
    return [(flow.name, state) for flow in engine.flows.values() for state in flow.states]


def check(engine, result) -> None:
    state = result.state
    assert state.flow in engine.flows, state
    assert state.state in engine.flows[state.flow].states, state
    assert result.replies, "every turn says something"
    assert all(isinstance(reply.text, str) and reply.text for reply in result.replies)
    assert {reply.input for reply in result.replies} == {engine.input_kind(state)}


def run(engine, session, sequence) -> None:
    world = MemoryWorld()
    world.users["ann"] = ("ann", "correct horse")
    result = engine.start(session, world)
    check(engine, result)
    for event in sequence:
        before = result.state
        snapshot = before.copy()
        result = engine.handle(before, event, world)
        check(engine, result)
        assert before == snapshot, "the engine never changes the session it was given"


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("which", ENGINES)
@SETTINGS
@given(lang=st.sampled_from(["en", "ru", "de", None]), sequence=events)
def test_a_new_session_survives_any_sequence(which, lang, sequence):
    engine = ENGINES[which]
    run(engine, engine.new_session(lang), sequence)


@pytest.mark.parametrize("which", ENGINES)
@SETTINGS
@given(data=st.data(), user=st.sampled_from([None, "ann"]), lang=st.sampled_from(["en", "ru", "de"]),
       sequence=events)
def test_a_session_in_any_state_survives_any_sequence(which, data, user, lang, sequence):
    engine = ENGINES[which]
    flow, state = data.draw(st.sampled_from(_states(engine)))
    slots = data.draw(st.dictionaries(st.sampled_from(["username", "nickname", "size", "count", "email"]),
                                      st.text(max_size=8), max_size=3))
    session = SessionState(flow=flow, state=state, slots=slots, lang=lang, user=user,
                           flow_version=engine.flows[flow].version)
    run(engine, session, sequence)


@pytest.mark.parametrize("which", ENGINES)
@SETTINGS
@given(flow=st.text(max_size=10), state=st.text(max_size=10), sequence=events)
def test_a_session_in_a_vanished_state_recovers(which, flow, state, sequence):
    engine = ENGINES[which]
    run(engine, SessionState(flow=flow, state=state), sequence)
