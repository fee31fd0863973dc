"""Flow validation: every kind of problem, with its exact message, all reported at once.

Each case writes a bot author's folder (data/flows/*.yaml) next to the built-in
flows and expects exactly the listed problems: no more (no follow-on noise),
no fewer.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from chatbot.dialogs import Registry, load_flows
from chatbot.dialogs.draw import mermaid
from chatbot.errors import ConfigError, FlowSetError
from tests.engine_helpers import Conversation, make_engine

# A small valid flow; the cases below are variations of it.  Line numbers in the
# expected messages refer to the texts exactly as written here.
GOOD = """\
name: pizza
entry: {command: /pizza}
languages: [en]
initial: ask_size
states:
  - name: ask_size
    say: "Which size?"
    capture: {slot: size, kind: word}
  - name: done
    say: "A {size} pizza, coming."
    goto: chat
transitions:
  - trigger: text
    source: ask_size
    dest: done
"""

# GOOD's questions written once and merged into another state with a YAML merge key.
MERGED = """\
name: pizza
entry: {command: /pizza}
languages: [en]
initial: ask_size
states:
  - &ask
    name: ask_size
    say: "Which size?"
    capture: {slot: size, kind: word}
    buttons: [{label: Help, action: help}]
  - <<: *ask
    name: ask_count
    say: "How many?"
    capture: {slot: count, kind: number}
  - name: done
    say: "{count} × {size}, coming."
    goto: chat
transitions:
  - {trigger: text, source: ask_size, dest: ask_count}
  - {trigger: text, source: ask_count, dest: done}
"""


def write(folder: Path, files: dict[str, str]) -> Path:
    flows = folder / "data" / "flows"
    flows.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (flows / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return flows


def problems_of(folder: Path, registry: Registry | None = None) -> list[str]:
    with pytest.raises(FlowSetError) as raised:
        load_flows(folder, registry or Registry.with_builtins())
    return [str(problem) for problem in raised.value.problems]


@pytest.fixture
def here(tmp_path, monkeypatch):
    """Run from the bot's folder, so that problems name `data/flows/...` as the author typed it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_base_flow_is_valid_and_runs(here):
    flows = write(here, {"pizza.yaml": GOOD})
    assert "pizza" in load_flows(Path("data/flows"), Registry.with_builtins())
    assert flows.is_dir()


CASES = {
    "two documents in one file": (
        {"pizza.yaml": GOOD + "---\nname: more\n"},
        ["data/flows/pizza.yaml:16: yaml syntax: expected a single document in the stream, "
         "but found another document"],
    ),
    "yaml syntax": (
        {"pizza.yaml": """\
            name: pizza
            languages: [en
            initial: ask_size
            """},
        ["data/flows/pizza.yaml:3: yaml syntax: expected ',' or ']', but got ':'"],
    ),
    "nested aliases are read once, not expanded": (
        {"pizza.yaml": GOOD + "description: [&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol], "
         + ", ".join(f"&a{level} [{', '.join([f'*a{level - 1}'] * 9)}]" for level in range(1, 10)) + "]\n"},
        ["data/flows/pizza.yaml:16: description: expected a text, got a list"],
    ),
    "a key that is not a name": (
        {"pizza.yaml": GOOD + "? [a, b]\n: c\n"},
        ["data/flows/pizza.yaml:16: a key must be a name, got a list"],
    ),
    "not a mapping": (
        {"pizza.yaml": "- just\n- a list\n"},
        ["data/flows/pizza.yaml:1: expected a mapping at the top, got a list"],
    ),
    "empty file": (
        {"pizza.yaml": ""},
        ["data/flows/pizza.yaml:1: empty file"],
    ),
    "misspelled top-level key": (
        {"pizza.yaml": GOOD.replace("transitions:", "trasitions:")},
        ["data/flows/pizza.yaml:12: trasitions: unknown key (did you mean 'transitions'?)"],
    ),
    "misspelled state key": (
        {"pizza.yaml": GOOD.replace('    say: "Which size?"', '    sai: "Which size?"')},
        ["data/flows/pizza.yaml:7: states[0].sai: unknown key (did you mean 'say'?)"],
    ),
    "misspelled transition key": (
        {"pizza.yaml": GOOD.replace("    dest: done", "    dset: done")},
        ["data/flows/pizza.yaml:15: transitions[0].dset: unknown key (did you mean 'dest'?)"],
    ),
    "duplicate key": (
        {"pizza.yaml": GOOD.replace('    say: "Which size?"\n', '    say: "Which size?"\n    say: "Size?"\n')},
        ["data/flows/pizza.yaml:8: states[0].say: duplicate key (first defined on line 7)"],
    ),
    "a key written twice next to a merge key": (
        {"pizza.yaml": MERGED.replace('    say: "How many?"\n', '    say: "How many?"\n    say: "Count?"\n')},
        ["data/flows/pizza.yaml:14: states[1].say: duplicate key (first defined on line 13)"],
    ),
    "a key written twice in a mapping merged where it is written": (
        {"pizza.yaml": MERGED.replace("  - <<: *ask\n", "  - <<: {final: false, final: true}\n")},
        ["data/flows/pizza.yaml:11: states[1].final: duplicate key (first defined on line 11)"],
    ),
    "wrong type of a flag": (
        {"pizza.yaml": GOOD.replace("    goto: chat", "    goto: chat\n    final: 'no'")},
        ["data/flows/pizza.yaml:12: states[1].final: expected true or false, got a text"],
    ),
    "wrong type of a list": (
        {"pizza.yaml": GOOD.replace("    capture: {slot: size, kind: word}",
                                    "    capture: {slot: size, kind: word}\n    buttons: Cancel")},
        ["data/flows/pizza.yaml:9: states[0].buttons: expected a list of buttons, got a text"],
    ),
    "missing required key": (
        {"pizza.yaml": GOOD.replace("initial: ask_size\n", "")},
        ["data/flows/pizza.yaml:1: initial: required key is missing"],
    ),
    "duplicate state": (
        {"pizza.yaml": GOOD.replace("  - name: done\n", "  - name: ask_size\n    say: again\n  - name: done\n")},
        ["data/flows/pizza.yaml:9: states[1].name: duplicate state 'ask_size' (first defined on line 6)"],
    ),
    "unknown dest": (
        {"pizza.yaml": GOOD.replace("    dest: done", "    dest: dnoe")},
        ["data/flows/pizza.yaml:15: transitions[0].dest: unknown state 'dnoe' (did you mean 'done'?)"],
    ),
    "unknown source": (
        {"pizza.yaml": GOOD.replace("    source: ask_size", "    source: ask_sise")},
        ["data/flows/pizza.yaml:14: transitions[0].source: unknown state 'ask_sise' (did you mean 'ask_size'?)"],
    ),
    "unknown source in a list": (
        {"pizza.yaml": GOOD.replace("    source: ask_size", "    source: [ask_size, ask_crust]")},
        ["data/flows/pizza.yaml:14: transitions[0].source[1]: unknown state 'ask_crust'"],
    ),
    "unknown initial": (
        {"pizza.yaml": GOOD.replace("initial: ask_size", "initial: start")},
        ["data/flows/pizza.yaml:4: initial: unknown state 'start'"],
    ),
    "unreachable state": (
        {"pizza.yaml": GOOD.replace("  - name: done\n", "  - name: forgotten\n    say: lost\n    goto: chat\n"
                                                        "  - name: done\n")},
        ["data/flows/pizza.yaml:9: states[1]: state 'forgotten' is unreachable from 'ask_size'"],
    ),
    "no way out": (
        {"pizza.yaml": GOOD.replace("    goto: chat\n", "")},
        ["data/flows/pizza.yaml:9: states[1]: state 'done' has no way out "
         "(add a transition, 'goto' or 'final: true')"],
    ),
    "a final state needs no way out": (
        {"pizza.yaml": GOOD.replace("    goto: chat\n", "    final: true\n") + "  - trigger: nope\n"
                                                                                "    source: ask_size\n"
                                                                                "    dest: done\n"},
        ["data/flows/pizza.yaml:16: transitions[1].trigger: unknown intent 'nope' "
         "(not an intent, a button action or 'text')"],
    ),
    "unknown action": (
        {"pizza.yaml": GOOD.replace("    dest: done", "    dest: done\n    after: tell_tme")},
        ["data/flows/pizza.yaml:16: transitions[0].after: unknown action 'tell_tme' (did you mean 'tell_time'?)"],
    ),
    "unknown action in a list": (
        {"pizza.yaml": GOOD.replace("    goto: chat", "    goto: chat\n    on_enter:\n      - forget\n      - fogret")},
        ["data/flows/pizza.yaml:14: states[1].on_enter[1]: unknown action 'fogret' (did you mean 'forget'?)"],
    ),
    "unknown names after a bad item of a list": (
        {"pizza.yaml": GOOD.replace("    goto: chat", "    goto: chat\n    on_enter: [5, tell_tme]")
         .replace("    source: ask_size", "    source:\n      - 5\n      - ask_sise")
         .replace("    dest: done", "    dest: done\n    after: [7, nope]")},
        ["data/flows/pizza.yaml:12: states[1].on_enter[0]: expected a name, got a number",
         "data/flows/pizza.yaml:16: transitions[0].source[0]: expected a name, got a number",
         "data/flows/pizza.yaml:19: transitions[0].after[0]: expected a name, got a number",
         "data/flows/pizza.yaml:12: states[1].on_enter[1]: unknown action 'tell_tme' (did you mean 'tell_time'?)",
         "data/flows/pizza.yaml:17: transitions[0].source[1]: unknown state 'ask_sise' (did you mean 'ask_size'?)",
         "data/flows/pizza.yaml:19: transitions[0].after[1]: unknown action 'nope'"],
    ),
    "unknown condition": (
        {"pizza.yaml": GOOD.replace("    dest: done", "    dest: done\n    conditions: 'hass:size'")},
        ["data/flows/pizza.yaml:16: transitions[0].conditions: unknown condition 'hass' (did you mean 'has'?)"],
    ),
    "unknown validation condition": (
        {"pizza.yaml": GOOD.replace("{slot: size, kind: word}", "{slot: size, kind: word, validate: big}")},
        ["data/flows/pizza.yaml:8: states[0].capture.validate: unknown condition 'big'"],
    ),
    "unknown intent": (
        {"pizza.yaml": GOOD.replace("  - trigger: text", "  - trigger: cancle\n    source: ask_size\n"
                                                         "    dest: done\n  - trigger: text")
         + "intents:\n  cancel:\n    keywords: [cancel]\n"},
        ["data/flows/pizza.yaml:13: transitions[0].trigger: unknown intent 'cancle' "
         "(not an intent, a button action or 'text') (did you mean 'cancel'?)"],
    ),
    "button with no transition": (
        {"pizza.yaml": GOOD.replace("    capture: {slot: size, kind: word}",
                                    "    capture: {slot: size, kind: word}\n    buttons:\n"
                                    "      - {label: Cancel, action: cancel}")},
        ["data/flows/pizza.yaml:10: states[0].buttons[0].action: no transition has trigger 'cancel'"],
    ),
    "button of a trigger that does not leave this state": (
        {"pizza.yaml": GOOD.replace("    goto: chat", "    goto: chat\n    buttons:\n"
                                                     "      - {label: Again, action: text}")},
        ["data/flows/pizza.yaml:13: states[1].buttons[0].action: "
         "'text' is the trigger of typed text, not a button action"],
    ),
    "button for a flow without entry": (
        {"pizza.yaml": GOOD.replace("    goto: chat", "    goto: chat\n    buttons:\n"
                                                     "      - {label: Log in, action: 'flow:login'}")},
        ["data/flows/pizza.yaml:13: states[1].buttons[0].action: flow 'login' has no 'entry', "
         "so no button can start it"],
    ),
    "button for an unknown language": (
        {"pizza.yaml": GOOD.replace("    goto: chat", "    goto: chat\n    buttons:\n"
                                                     "      - {label: Deutsch, action: 'lang:de'}")},
        ["data/flows/pizza.yaml:13: states[1].buttons[0].action: unknown language 'de' "
         "(the flows speak: en, ru)"],
    ),
    "invalid capture regex": (
        {"pizza.yaml": GOOD.replace("{slot: size, kind: word}", "{slot: size, kind: regex, pattern: '(small|large'}")},
        ["data/flows/pizza.yaml:8: states[0].capture.pattern: invalid regular expression: "
         "missing ) at position 12"],
    ),
    "invalid intent regex": (
        {"pizza.yaml": GOOD + "intents:\n  size:\n    patterns: ['(?P<size>small|large']\n"},
        ["data/flows/pizza.yaml:18: intents.size.patterns.en[0]: invalid regular expression: "
         "missing ) at position 20"],
    ),
    "capture group that the pattern lacks": (
        {"pizza.yaml": GOOD.replace("{slot: size, kind: word}",
                                    "{slot: size, kind: regex, pattern: '(?P<size>small|large)', group: sise}")},
        ["data/flows/pizza.yaml:8: states[0].capture.group: the pattern has no group named 'sise' "
         "(did you mean 'size'?)"],
    ),
    "pattern with a kind that takes none": (
        {"pizza.yaml": GOOD.replace("{slot: size, kind: word}", "{slot: size, kind: number, pattern: '\\d+'}")},
        ["data/flows/pizza.yaml:8: states[0].capture.pattern: only used with kind 'regex', not 'number'"],
    ),
    "keyword that normalises to nothing": (
        {"pizza.yaml": GOOD + "intents:\n  ask:\n    keywords: ['?!']\n"},
        ["data/flows/pizza.yaml:18: intents.ask.keywords.en[0]: '?!' is empty once normalised "
         "(punctuation is ignored)"],
    ),
    "message missing in a declared language": (
        {"pizza.yaml": GOOD.replace("languages: [en]", "languages: [en, ru]")
         .replace('    say: "Which size?"', '    say:\n      en: "Which size?"\n      ru: "Какой размер?"')
         .replace('    say: "A {size} pizza, coming."', '    say: {en: "A {size} pizza, coming."}')},
        ["data/flows/pizza.yaml:12: states[1].say: missing text in language 'ru'"],
    ),
    "one text where a flow speaks two languages": (
        {"pizza.yaml": GOOD.replace("languages: [en]", "languages: [en, ru]")
         .replace('    say: "Which size?"', '    say:\n      en: "Which size?"\n      ru: "Какой размер?"')},
        ["data/flows/pizza.yaml:12: states[1].say: expected a text per language (en, ru), got one text"],
    ),
    "empty texts, which would say nothing or show a blank button": (
        {"pizza.yaml": GOOD.replace('    say: "Which size?"',
                                    '    say: " "\n    buttons: [{label: ["Cancel", ""], action: cancel}]')
         .replace('    say: "A {size} pizza, coming."', '    say: ""')
         + "  - {trigger: cancel, source: ask_size, dest: done}\n"},
        ["data/flows/pizza.yaml:7: states[0].say: empty text",
         "data/flows/pizza.yaml:8: states[0].buttons[0].label[1]: empty text",
         "data/flows/pizza.yaml:11: states[1].say: empty text"],
    ),
    "message in an undeclared language": (
        {"pizza.yaml": GOOD.replace('    say: "Which size?"', '    say:\n      en: "Which size?"\n      de: "Welche?"')},
        ["data/flows/pizza.yaml:9: states[0].say.de: language not declared in 'languages' (en)"],
    ),
    "placeholder of a slot never set": (
        {"pizza.yaml": GOOD.replace("A {size} pizza", "A {sise} pizza")},
        ["data/flows/pizza.yaml:10: states[1].say: placeholder '{sise}' names a slot that is never set "
         "(did you mean 'size'?)"],
    ),
    "placeholder of a slot never set, in several variants": (
        {"pizza.yaml": GOOD.replace('    say: "A {size} pizza, coming."', '    say:\n      - "Coming."\n'
                                    '      - "A {sise} pizza, coming."\n      - "{sise}, {sise}: coming."')},
        ["data/flows/pizza.yaml:12: states[1].say: placeholder '{sise}' names a slot that is never set "
         "(did you mean 'size'?)"],
    ),
    "trigger clashing with the model": (
        {"pizza.yaml": GOOD.replace("  - name: done", "  - name: done\n    buttons: [{label: Go, action: say}]")
         + "  - trigger: say\n    source: done\n    dest: ask_size\n"},
        ["data/flows/pizza.yaml:17: transitions[1].trigger: trigger 'say' clashes with an attribute "
         "of the dialog model"],
    ),
    "trigger clashing with what transitions adds": (
        {"pizza.yaml": GOOD.replace("  - name: done", "  - name: done\n    buttons: [{label: Go, action: to_done}]")
         + "  - trigger: to_done\n    source: done\n    dest: ask_size\n"},
        ["data/flows/pizza.yaml:17: transitions[1].trigger: trigger 'to_done' clashes with an attribute "
         "of the dialog model"],
    ),
    "two flows with one name in a folder": (
        {"pizza.yaml": GOOD, "pizza_copy.yaml": GOOD},
        ["data/flows/pizza_copy.yaml:1: name: flow 'pizza' is also defined in data/flows/pizza.yaml"],
    ),
    "unknown goto flow": (
        {"pizza.yaml": GOOD.replace("goto: chat", "goto: caht")},
        ["data/flows/pizza.yaml:11: states[1].goto: unknown flow 'caht' (did you mean 'chat'?)"],
    ),
    "unknown goto state": (
        {"pizza.yaml": GOOD.replace("goto: chat", "goto: 'chat:listen'")},
        ["data/flows/pizza.yaml:11: states[1].goto: unknown state 'listen' in flow 'chat' "
         "(did you mean 'listening'?)"],
    ),
    "goto cycle in one flow": (
        {"pizza.yaml": GOOD.replace("    goto: chat", "    goto: 'pizza:again'\n  - name: again\n"
                                                     "    goto: 'pizza:done'")},
        ["data/flows/pizza.yaml:11: states[1].goto: goto cycle without user input: "
         "pizza:done -> pizza:again -> pizza:done"],
    ),
    "goto cycle across flows": (
        {"pizza.yaml": GOOD.replace("    goto: chat", "    goto: 'drinks'"),
         "drinks.yaml": """\
            name: drinks
            languages: [en]
            initial: offer
            states:
              - name: offer
                goto: 'pizza:done'
            """},
        ["data/flows/drinks.yaml:6: states[0].goto: goto cycle without user input: "
         "drinks:offer -> pizza:done -> drinks:offer"],
    ),
    "a goto onto itself": (
        {"pizza.yaml": GOOD.replace("    goto: chat", "    goto: pizza:done")},
        ["data/flows/pizza.yaml:11: states[1].goto: goto cycle without user input: pizza:done -> pizza:done"],
    ),
    "password input without capture": (
        {"pizza.yaml": GOOD.replace("    capture: {slot: size, kind: word}", "    input: password")},
        ["data/flows/pizza.yaml:8: states[0].input: a password input needs 'capture' to name the secret it keeps",
         "data/flows/pizza.yaml:10: states[1].say: placeholder '{size}' names a slot that is never set"],
    ),
    "entry command taken by a built-in": (
        {"pizza.yaml": GOOD.replace("/pizza", "/help")},
        ["data/flows/pizza.yaml:2: entry.command: '/help' is a built-in command"],
    ),
    "entry command taken by another flow": (
        {"pizza.yaml": GOOD.replace("/pizza", "/order"),
         "drinks.yaml": GOOD.replace("/pizza", "/order").replace("name: pizza", "name: drinks")},
        ["data/flows/pizza.yaml:2: entry.command: '/order' is also the command of flow 'drinks'"],
    ),
    "a flow nothing leads to": (
        {"pizza.yaml": GOOD.replace("entry: {command: /pizza}\n", "")},
        ["data/flows/pizza.yaml:1: name: nothing leads to flow 'pizza': give it an 'entry' or 'goto' it "
         "from another flow"],
    ),
    "invalid entry": (
        {"pizza.yaml": GOOD.replace("{command: /pizza}", "{command: pizza, access: everyone}")},
        ["data/flows/pizza.yaml:2: entry.command: invalid command 'pizza' (a '/' then lowercase letters, "
         "digits, _)",
         "data/flows/pizza.yaml:2: entry.access: unknown access 'everyone' (expected one of: users, guests, "
         "anyone)"],
    ),
    "a control character": (
        {"pizza.yaml": GOOD.replace('"Which size?"', '"Which\x0c size?"')},
        ["data/flows/pizza.yaml:7: yaml syntax: unacceptable character #x000c: special characters are not allowed"],
    ),
    "a nul character in a comment": (
        {"pizza.yaml": GOOD + "# \x00\n"},
        ["data/flows/pizza.yaml:16: yaml syntax: unacceptable character #x0000: special characters are not allowed"],
    ),
    "nesting too deep": (
        {"pizza.yaml": GOOD + "description: " + "[" * 300 + "]" * 300 + "\n"},
        ["data/flows/pizza.yaml:16: yaml syntax: nested more than 50 levels deep"],
    ),
    "nesting too deep through a chain of aliases": (
        {"pizza.yaml": GOOD + "description: [&a0 [x], "
         + ", ".join(f"&a{level} [*a{level - 1}]" for level in range(1, 60)) + "]\n"},
        ["data/flows/pizza.yaml:16: yaml syntax: nested more than 50 levels deep"],
    ),
    "an ordered map tag": (
        {"pizza.yaml": GOOD + "intents: !!omap\n  - big: {keywords: [big]}\n"},
        ["data/flows/pizza.yaml:16: yaml syntax: !!omap is not supported: write a plain list or mapping"],
    ),
    "a pairs tag": (
        {"pizza.yaml": GOOD.replace('    say: "Which size?"', '    say: !!pairs [en: "Which size?"]')},
        ["data/flows/pizza.yaml:7: yaml syntax: !!pairs is not supported: write a plain list or mapping"],
    ),
    "a set tag": (
        {"pizza.yaml": GOOD.replace("languages: [en]", "languages: !!set {en}")},
        ["data/flows/pizza.yaml:3: yaml syntax: !!set is not supported: write a plain list or mapping"],
    ),
    "a button label left empty": (
        {"pizza.yaml": GOOD.replace("    capture: {slot: size, kind: word}",
                                    "    capture: {slot: size, kind: word}\n    buttons:\n"
                                    "      - {label: null, action: help}")},
        ["data/flows/pizza.yaml:10: states[0].buttons[0].label: expected a text or a mapping of language to text, "
         "got nothing"],
    ),
    "initial left empty": (
        {"pizza.yaml": GOOD.replace("initial: ask_size", "initial:")},
        ["data/flows/pizza.yaml:4: initial: expected a state name, got nothing"],
    ),
    "states left empty": (
        {"pizza.yaml": GOOD.replace(GOOD[GOOD.index("  - name: ask_size"):GOOD.index("transitions:")], "")},
        ["data/flows/pizza.yaml:5: states: expected a list of states, got nothing"],
    ),
    "an intent named text": (
        {"pizza.yaml": GOOD + "intents:\n  text:\n    keywords: [pizza]\n"},
        ["data/flows/pizza.yaml:17: intents.text: 'text' is the trigger of typed text, not an intent name"],
    ),
    "a capture into a slot named user": (
        {"pizza.yaml": GOOD.replace("{slot: size, kind: word}", "{slot: user, kind: word}")
         .replace("{size}", "{user}")},
        ["data/flows/pizza.yaml:8: states[0].capture.slot: slot name 'user' is reserved: '{user}' shows "
         "the logged-in user"],
    ),
    "a pattern group named lang": (
        {"pizza.yaml": GOOD + "intents:\n  size:\n    patterns:\n      - '(?P<lang>en|ru)'\n"},
        ["data/flows/pizza.yaml:19: intents.size.patterns.en[0]: slot name 'lang' is reserved: '{lang}' shows "
         "the session's language"],
    ),
    "a state name longer than a session can store": (
        {"pizza.yaml": GOOD.replace("ask_size", "ask_" + "s" * 61)},
        ["data/flows/pizza.yaml:6: states[0].name: invalid state name 'ask_" + "s" * 61 + "' (letters, digits, _, "
         "at most 64 characters)"],
    ),
    "a pattern group named lang, written as in Perl": (
        {"pizza.yaml": GOOD + "intents:\n  size:\n    patterns:\n      - '(?<lang>en|ru)'\n"},
        ["data/flows/pizza.yaml:19: intents.size.patterns.en[0]: slot name 'lang' is reserved: '{lang}' shows "
         "the session's language"],
    ),
    "a transition from an empty list of states": (
        {"pizza.yaml": GOOD.replace("    source: ask_size", "    source: []")},
        ["data/flows/pizza.yaml:14: transitions[0].source: expected a state, a list of states or '*', "
         "got an empty list"],
    ),
    "a transition with its source left empty": (
        {"pizza.yaml": GOOD.replace("    source: ask_size", "    source:")},
        ["data/flows/pizza.yaml:14: transitions[0].source: expected a state, a list of states or '*', got nothing"],
    ),
    "a fallback state that is a list": (
        {"pizza.yaml": GOOD + "fallback_state: [done]\n"},
        ["data/flows/pizza.yaml:16: fallback_state: expected a state name, got a list"],
    ),
    "a fallback state that is a number": (
        {"pizza.yaml": GOOD + "fallback_state: 2\n"},
        ["data/flows/pizza.yaml:16: fallback_state: expected a state name, got a number"],
    ),
    "placeholder of a password input's secret": (
        {"pizza.yaml": GOOD.replace('    say: "Which size?"', '    say: "Which size?"\n    input: password')
         .replace("{slot: size, kind: word}", "{slot: size}")},
        ["data/flows/pizza.yaml:11: states[1].say: placeholder '{size}' names the secret of a password input, "
         "which is never shown"],
    ),
    "a button left out does not shift the keys of the later ones": (
        {"pizza.yaml": GOOD.replace("    capture: {slot: size, kind: word}",
                                    "    capture: {slot: size, kind: word}\n    buttons:\n      - {label: A}\n"
                                    "      - {label: B, action: nope}\n      - {label: '{sise}', action: help}")},
        ["data/flows/pizza.yaml:10: states[0].buttons[0].action: required key is missing",
         "data/flows/pizza.yaml:11: states[0].buttons[1].action: no transition has trigger 'nope'",
         "data/flows/pizza.yaml:12: states[0].buttons[2].label: placeholder '{sise}' names a slot that is never set "
         "(did you mean 'size'?)"],
    ),
    "a button without a usable action is still read": (
        {"pizza.yaml": GOOD.replace("    capture: {slot: size, kind: word}",
                                    "    capture: {slot: size, kind: word}\n    buttons:\n      - {action: 5}")},
        ["data/flows/pizza.yaml:10: states[0].buttons[0].action: expected an action name, got a number",
         "data/flows/pizza.yaml:10: states[0].buttons[0].label: required key is missing"],
    ),
    "a flow without initial is still read to the end": (
        {"pizza.yaml": GOOD.replace("initial: ask_size\n", "help: 5\n")
         .replace("{command: /pizza}", "{command: a}")},
        ["data/flows/pizza.yaml:1: initial: required key is missing",
         "data/flows/pizza.yaml:4: help: expected a text or a mapping of language to text, got a number",
         "data/flows/pizza.yaml:2: entry.command: invalid command 'a' (a '/' then lowercase letters, digits, _)"],
    ),
    "a capture without a usable slot is still read": (
        {"pizza.yaml": GOOD.replace("{slot: size, kind: word}", "{slot: 5, kind: wrd}").replace("A {size}", "A")},
        ["data/flows/pizza.yaml:8: states[0].capture.slot: expected a slot name, got a number",
         "data/flows/pizza.yaml:8: states[0].capture.kind: unknown capture kind 'wrd' "
         "(expected one of: email, number, regex, text, word)"],
    ),
    "a state or transition without its name or trigger is still read": (
        {"pizza.yaml": GOOD.replace("transitions:", "  - input: secret\n    goto: chat\ntransitions:")
         + "  - source: done\n    dest: [ask_size]\n"},
        ["data/flows/pizza.yaml:12: states[2].name: required key is missing",
         "data/flows/pizza.yaml:12: states[2].input: unknown input kind 'secret' (expected one of: text, password)",
         "data/flows/pizza.yaml:18: transitions[1].trigger: required key is missing",
         "data/flows/pizza.yaml:19: transitions[1].dest: expected a state name, got a list"],
    ),
    "what a password input does not use": (
        {"pizza.yaml": GOOD.replace("    capture: {slot: size, kind: word}",
                                    "    input: password\n    capture:\n      slot: size\n      kind: word\n"
                                    "      validate: logged_in\n      invalid: 'Again?'")
         .replace("A {size} pizza", "A pizza")},
        ["data/flows/pizza.yaml:11: states[0].capture.kind: a password input keeps the text as typed, "
         "so 'kind' is not used",
         "data/flows/pizza.yaml:12: states[0].capture.validate: a password input keeps the text as typed, "
         "so 'validate' is not used",
         "data/flows/pizza.yaml:13: states[0].capture.invalid: a password input keeps the text as typed, "
         "so 'invalid' is not used"],
    ),
    "set_language to a language no flow speaks": (
        {"pizza.yaml": GOOD.replace("    dest: done",
                                    "    dest: done\n    after: [set_language:ru, set_language:de]")
         .replace("    goto: chat", "    goto: chat\n    on_enter: set_language")},
        ["data/flows/pizza.yaml:17: transitions[0].after[1]: unknown language 'de' (the flows speak: en, ru)"],
    ),
    "an empty goto": (
        {"pizza.yaml": GOOD.replace("goto: chat", "goto: ''")},
        ["data/flows/pizza.yaml:11: states[1].goto: expected a flow name, got an empty text"],
    ),
    "line and paragraph separators in a text are not line breaks": (
        {"pizza.yaml": GOOD.replace('"Which size?"', '"Which\u2028size\u2029or\x85what?"')
         .replace("dest: done", "dest: dnoe")},
        ["data/flows/pizza.yaml:15: transitions[0].dest: unknown state 'dnoe' (did you mean 'done'?)"],
    ),
    "a yaml syntax error after a line separator": (
        {"pizza.yaml": GOOD.replace('"Which size?"', '"Which\u2028size?"')
         .replace("    dest: done", "    dest: [done")},
        ["data/flows/pizza.yaml:16: yaml syntax: expected ',' or ']', but got '<stream end>'"],
    ),
    "a control character after a line separator": (
        {"pizza.yaml": GOOD.replace('"Which size?"', '"Which\u2028size?"').replace("A {size}", "A\x0c{size}")},
        ["data/flows/pizza.yaml:10: yaml syntax: unacceptable character #x000c: special characters are not allowed"],
    ),
    "an escaped control character or lone surrogate in a text": (
        {"pizza.yaml": GOOD.replace('"Which size?"', '"Which\\0 size?"')
         .replace("A {size} pizza", "A {size}\\ud800 pizza")
         + "intents:\n  big:\n    keywords: [large, \"\\e[2J\"]\n  \"sm\\ball\": {keywords: [small]}\n"},
        ["data/flows/pizza.yaml:7: states[0].say: a text may not hold the control character U+0000",
         "data/flows/pizza.yaml:10: states[1].say: a text may not hold the lone surrogate U+D800",
         "data/flows/pizza.yaml:18: intents.big.keywords[1]: a text may not hold the control character U+001B",
         "data/flows/pizza.yaml:19: intents: a key may not hold the control character U+0008"],
    ),
    "a name ending in a line break": (
        {"pizza.yaml": GOOD.replace("name: pizza", 'name: "pizza\\n"')
         .replace("{command: /pizza}", "\n  command: |\n    /pizza")
         .replace("[en]", '["en\\n"]')
         .replace("name: done", 'name: "done\\n"').replace("dest: done", 'dest: "done\\n"')
         .replace("{slot: size, kind: word}", '{slot: "size\\n", kind: word}').replace("A {size}", "A")
         + "intents:\n  \"big\\n\": {keywords: [large]}\n"},
        ["data/flows/pizza.yaml:1: name: invalid flow name 'pizza\\n' (letters, digits, _, at most 64 characters)",
         "data/flows/pizza.yaml:5: languages[0]: invalid language code 'en\\n'",
         "data/flows/pizza.yaml:10: states[0].capture.slot: invalid slot name 'size\\n' "
         "(letters, digits, _, at most 64 characters)",
         "data/flows/pizza.yaml:11: states[1].name: invalid state name 'done\\n' "
         "(letters, digits, _, at most 64 characters)",
         "data/flows/pizza.yaml:19: intents: invalid intent name 'big\\n' (letters, digits, _, "
         "at most 64 characters)",
         "data/flows/pizza.yaml:3: entry.command: invalid command '/pizza\\n' (a '/' then lowercase letters, "
         "digits, _)"],
    ),
    "an intent whose lists are all empty": (
        {"pizza.yaml": GOOD + "intents:\n  big: {keywords: [], patterns: []}\n  small: {examples: {en: []}}\n"},
        ["data/flows/pizza.yaml:17: intents.big: an intent needs at least one keyword, pattern or example",
         "data/flows/pizza.yaml:18: intents.small: an intent needs at least one keyword, pattern or example"],
    ),
    "an intent pattern that matches an empty text": (
        {"pizza.yaml": GOOD + "intents:\n  big:\n    patterns: ['', '(?:large)?', '^$', large]\n"},
        ["data/flows/pizza.yaml:18: intents.big.patterns.en[0]: '' matches an empty text, "
         "so it would match every message",
         "data/flows/pizza.yaml:18: intents.big.patterns.en[1]: '(?:large)?' matches an empty text, "
         "so it would match every message"],
    ),
    "a button action or trigger that is not a name": (
        {"pizza.yaml": GOOD.replace("    capture: {slot: size, kind: word}",
                                    "    capture: {slot: size, kind: word}\n    buttons:\n"
                                    "      - {label: Go, action: \"go\\n    done --> [*]\"}\n"
                                    "      - {label: Blank, action: '  '}")
         + "  - {trigger: \"go\\n    done --> [*]\", source: ask_size, dest: done}\n"
         + "  - {trigger: 'flow:', source: ask_size, dest: done}\n"},
        ["data/flows/pizza.yaml:10: states[0].buttons[0].action: invalid action name 'go\\n    done --> [*]' "
         "(letters, digits, _, at most 64 characters, maybe after 'lang:' or 'flow:')",
         "data/flows/pizza.yaml:11: states[0].buttons[1].action: invalid action name '  ' "
         "(letters, digits, _, at most 64 characters, maybe after 'lang:' or 'flow:')",
         "data/flows/pizza.yaml:19: transitions[1].trigger: invalid trigger name 'go\\n    done --> [*]' "
         "(letters, digits, _, at most 64 characters, maybe after 'lang:' or 'flow:')",
         "data/flows/pizza.yaml:20: transitions[2].trigger: invalid trigger name 'flow:' "
         "(letters, digits, _, at most 64 characters, maybe after 'lang:' or 'flow:')"],
    ),
    "an action where a condition belongs, and the reverse": (
        {"pizza.yaml": GOOD.replace("    dest: done", "    dest: done\n    before: logged_in\n    unless: forget")},
        ["data/flows/pizza.yaml:17: transitions[0].unless: unknown condition 'forget' ('forget' is an action)",
         "data/flows/pizza.yaml:16: transitions[0].before: unknown action 'logged_in' ('logged_in' is a condition) "
         "(did you mean 'log_in'?)"],
    ),
}


@pytest.mark.parametrize("files, expected", CASES.values(), ids=CASES.keys())
def test_each_kind_of_problem_is_reported_exactly(here, files, expected):
    write(here, files)
    assert problems_of(Path("data/flows")) == expected


def test_a_password_capture_may_say_its_kind_is_text(here):
    write(here, {"pizza.yaml": GOOD.replace("{slot: size, kind: word}", "{slot: size, kind: text}")
          .replace('    say: "Which size?"', '    say: "Which size?"\n    input: password')
          .replace("A {size}", "A")})
    assert "pizza" in load_flows(Path("data/flows"), Registry.with_builtins())


def test_an_escaped_surrogate_pair_is_read_as_the_one_character_it_writes(here):
    # as JSON writes a character past U+FFFF
    write(here, {"pizza.yaml": GOOD.replace('"Which size?"', '"\\ud83c\\udf55 Which size?"')})
    chat = Conversation(make_engine(Path("data/flows")))
    chat.register()
    chat.say("/pizza")
    assert chat.texts == ["🍕 Which size?"]


def test_a_plain_equals_sign_or_merge_sign_is_a_text_where_it_is_not_a_key(here):
    write(here, {"pizza.yaml": GOOD.replace('"Which size?"', "=")
                 + "  - {trigger: back, source: ask_size, dest: null, say: <<}\n"
                 + "intents:\n  back: {keywords: [<<, =, back]}\n"})
    chat = Conversation(make_engine(Path("data/flows")))
    chat.register()
    chat.say("/pizza")
    assert chat.texts == ["="]
    chat.say("<<")
    assert chat.texts == ["<<"]


def test_a_diagram_label_cannot_start_a_line_of_its_own(here):
    # a condition's argument is any text: a line break in it must not end the label
    write(here, {"pizza.yaml": GOOD.replace("    dest: done",
                                            '    dest: done\n    conditions: "has:size\\n    done --> [*]"')})
    lines = mermaid(load_flows(Path("data/flows"), Registry.with_builtins())["pizza"]).splitlines()
    assert "    ask_size --> done: text [has#58;size#10;    done --#62; [#42;]]" in lines
    assert "    done --> [*]" not in lines


def test_a_file_that_is_not_utf8_is_reported_at_the_line_of_the_first_bad_byte(here):
    flows = write(here, {})
    # far past the first chunk a text-mode read decodes, and with Windows line breaks
    text = GOOD + "# more\n" * 3000 + "description: café\n"
    (flows / "pizza.yaml").write_bytes(text.replace("\n", "\r\n").encode("latin-1"))
    assert problems_of(Path("data/flows")) == ["data/flows/pizza.yaml:3016: cannot read: not UTF-8 (byte 0xe9)"]


def test_keys_written_next_to_a_merge_key_override_the_merged_ones(here):
    write(here, {"pizza.yaml": MERGED})
    chat = Conversation(make_engine(Path("data/flows")))
    chat.register()
    chat.say("/pizza")
    chat.say("large")
    assert chat.texts == ["How many?"]
    assert chat.result.replies[0].buttons == (("Help", "help"),), "what is not overridden is merged"
    chat.say("2")
    assert chat.texts[0] == "2 × large, coming."


def test_every_problem_of_a_folder_is_listed_at_once_even_when_a_file_does_not_parse(here):
    write(here, {
        # cannot be parsed: reported once; the flows that go to it are not blamed for it
        "drinks.yaml": "name: drinks\nlanguages: [en\n",
        # meant to replace the built-in chat flow, but broken: the built-in one stays
        "chat.yaml": "name: chat\nstates: {\n",
        "pizza.yaml": GOOD.replace("dest: done", "dest: dnoe").replace("goto: chat", "goto: drinks"),
        "salad.yaml": GOOD.replace("pizza", "salad").replace("dest: done", "dest: done\n"
                                                                           "    after: toss"),
        "soup.yaml": GOOD.replace("pizza", "soup").replace("sai", "say").replace(
            "    say: \"Which size?\"", "    sya: \"Which size?\""),
    })
    assert problems_of(Path("data/flows")) == [
        "data/flows/chat.yaml:3: yaml syntax: expected the node content, but found '<stream end>'",
        "data/flows/drinks.yaml:3: yaml syntax: expected ',' or ']', but got '<stream end>'",
        "data/flows/soup.yaml:7: states[0].sya: unknown key (did you mean 'say'?)",
        "data/flows/pizza.yaml:15: transitions[0].dest: unknown state 'dnoe' (did you mean 'done'?)",
        "data/flows/salad.yaml:16: transitions[0].after: unknown action 'toss'",
    ]


def test_a_flow_that_lost_a_part_to_a_shape_problem_gets_no_graph_noise(here):
    # the transition is dropped (its trigger is not a name); 'ask_size' then looks stuck and 'done'
    # unreachable, but that is only a consequence of the problem already reported
    write(here, {"pizza.yaml": GOOD.replace("  - trigger: text", "  - trigger: [text]")})
    assert problems_of(Path("data/flows")) == [
        "data/flows/pizza.yaml:13: transitions[0].trigger: expected a trigger name, got a list",
    ]


def test_the_problems_read_the_same_as_the_error_text(here):
    write(here, {"pizza.yaml": GOOD.replace("dest: done", "dest: dnoe")})
    with pytest.raises(FlowSetError) as raised:
        load_flows(Path("data/flows"), Registry.with_builtins())
    assert str(raised.value) == "data/flows/pizza.yaml:15: transitions[0].dest: unknown state 'dnoe' (did you mean 'done'?)"


def test_a_flow_with_the_name_of_a_built_in_replaces_it(here):
    write(here, {"chat.yaml": GOOD.replace("name: pizza", "name: chat").replace("goto: chat", "final: true")})
    engine = make_engine(Path("data/flows"))
    chat = Conversation(engine)
    chat.register()
    assert chat.where == "chat:ask_size"
    assert chat.texts[-1] == "Which size?"


def test_hidden_files_and_other_extensions_in_the_folder_are_not_flows(here):
    flows = write(here, {"pizza.yaml": GOOD, "pizza.yaml.html": "<html>", ".pizza.yaml": "name: [broken"})
    (flows / ".#pizza.yaml").symlink_to("ann@host.1234:1700000000")  # an editor's lock: a link to nowhere
    assert list(load_flows(Path("data/flows"), Registry.with_builtins())) == [
        "chat", "hub", "login", "registration", "pizza"]


def test_a_missing_folder_is_one_clear_problem(here):
    assert problems_of(Path("data/flows")) == ["data/flows: no such folder"]


ACTIONS_MODULE = '''\
from chatbot.dialogs import action, condition


@action(sets=("price",))
def price_order(ctx, arg=None):
    ctx.set_slot("price", {"small": 8, "large": 12}[ctx.slots["size"]])


@condition()
def size_on_menu(ctx, arg=None):
    return ctx.slots.get("size") in ("small", "large")
'''

PRICED = GOOD.replace("{slot: size, kind: word}", "{slot: size, kind: word, validate: size_on_menu, "
                                                   "invalid: 'Small or large?'}") \
             .replace("    dest: done", "    dest: done\n    before: price_order") \
             .replace("A {size} pizza, coming.", "A {size} pizza for {price} euros, coming.")


def test_an_authors_module_registers_actions_and_conditions_that_flows_use(here):
    (here / "pizza_actions.py").write_text(ACTIONS_MODULE, encoding="utf-8")
    write(here, {"pizza.yaml": PRICED})
    registry = Registry.with_builtins()
    assert registry.load("pizza_actions.py") == 2
    engine = make_engine(Path("data/flows"), registry)
    chat = Conversation(engine)
    chat.register()
    chat.say("/pizza")
    assert chat.texts == ["Which size?"]
    chat.say("huge")
    assert chat.texts == ["Small or large?"]
    assert "size" not in chat.state.slots, "a value that failed validation is not kept"
    chat.say("large please")
    assert chat.texts[0] == "A large pizza for 12 euros, coming."
    assert chat.where == "chat:listening"


def test_without_the_module_its_names_are_unknown_and_a_typo_gets_a_suggestion(here):
    write(here, {"pizza.yaml": PRICED})
    assert problems_of(Path("data/flows")) == [
        "data/flows/pizza.yaml:8: states[0].capture.validate: unknown condition 'size_on_menu'",
        # true as well: without the module nothing sets the slot
        "data/flows/pizza.yaml:10: states[1].say: placeholder '{price}' names a slot that is never set",
        "data/flows/pizza.yaml:16: transitions[0].before: unknown action 'price_order'",
    ]
    (here / "pizza_actions.py").write_text(ACTIONS_MODULE, encoding="utf-8")
    write(here, {"pizza.yaml": PRICED.replace("before: price_order", "before: price_ordr")})
    registry = Registry.with_builtins()
    registry.load("pizza_actions.py")
    assert problems_of(Path("data/flows"), registry) == [
        "data/flows/pizza.yaml:16: transitions[0].before: unknown action 'price_ordr' (did you mean 'price_order'?)",
    ]


@pytest.mark.parametrize("source, expected", [
    ("", "actions: {path}: no function marked with @action or @condition"),
    ("import no_such_module_here\n", "actions: {path}: import failed: ModuleNotFoundError: "
                                     "No module named 'no_such_module_here'"),
])
def test_an_unusable_actions_module_is_a_clear_error(here, source, expected):
    (here / "broken_actions.py").write_text(source, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        Registry.with_builtins().load("broken_actions.py")
    assert str(raised.value) == expected.format(path="broken_actions.py")


def test_a_missing_actions_file_is_a_clear_error(here):
    with pytest.raises(ConfigError) as raised:
        Registry.with_builtins().load("nowhere/actions.py")
    assert str(raised.value) == "actions: nowhere/actions.py: no such file"


def test_the_reserved_trigger_names_in_the_docs_are_those_refused():
    import re

    from chatbot.dialogs.validate import RESERVED_TRIGGERS

    doc = (Path(__file__).resolve().parent.parent / "docs" / "flows.md").read_text(encoding="utf-8")
    sentence = doc.split("A trigger may not take a name the dialog model already has", 1)[1].split(" — nor", 1)[0]
    assert set(re.findall(r"`(\w+)`", sentence)) == RESERVED_TRIGGERS
