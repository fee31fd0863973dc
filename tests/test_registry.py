"""Registering an author's actions and conditions: the forms of the decorators, and what is refused."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from chatbot.cli import main
from chatbot.dialogs import Registry
from chatbot.errors import ConfigError
from tests.engine_helpers import Conversation, make_engine

PIZZA = """\
name: pizza
entry: {command: /pizza}
languages: [en]
initial: ask_size
states:
  - name: ask_size
    say: "Which size?"
    capture: {slot: size, kind: word, validate: size_on_menu, invalid: "Small or large?"}
  - name: done
    say: "A {size} pizza, coming."
    goto: chat
transitions:
  - trigger: text
    source: ask_size
    dest: done
    before: price_order
"""

# Both decorators written without parentheses, as Python decorators often are.
BARE = """\
from chatbot.dialogs import action, condition


@action
def price_order(ctx, arg=None):
    ctx.say(f"That is {12 if ctx.slots['size'] == 'large' else 8} euros.")


@condition
def size_on_menu(ctx, arg=None):
    return ctx.slots.get("size") in ("small", "large")
"""
CALLED = BARE.replace("@action\n", "@action()\n").replace("@condition\n", "@condition()\n")


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_bot(folder: Path, actions: str) -> Path:
    """The pizza flow in data/flows and `actions` in pizza_actions.py; return the flows folder."""
    flows = folder / "data" / "flows"
    flows.mkdir(parents=True)
    (flows / "pizza.yaml").write_text(PIZZA, encoding="utf-8")
    (folder / "pizza_actions.py").write_text(textwrap.dedent(actions), encoding="utf-8")
    return flows


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return done.value.code or 0


def test_bare_decorators_register_like_the_called_ones_and_run(here):
    flows = write_bot(here, BARE)
    registry = Registry.with_builtins()
    assert registry.load("pizza_actions.py") == 2
    assert registry.actions["price_order"].func.__name__ == "price_order", "the function itself, not the decorator"
    chat = Conversation(make_engine(flows, registry))
    chat.register()
    chat.say("/pizza")
    chat.say("huge")
    assert chat.texts == ["Small or large?"], "the condition ran and said no"
    chat.say("large")
    assert chat.texts[:2] == ["That is 12 euros.", "A large pizza, coming."]


def test_bare_decorators_keep_the_function_callable(here):
    write_bot(here, BARE)
    Registry().load("pizza_actions.py")
    module = sys.modules["chatbot_user_actions_pizza_actions"]
    assert module.size_on_menu(SimpleNamespace(slots={"size": "small"})) is True


def test_flows_check_accepts_bare_decorators(here, capsys):
    write_bot(here, BARE)
    assert run(["flows", "check", "--actions", "pizza_actions.py"]) == 0
    assert "ok  pizza" in capsys.readouterr().out


ASYNC_MESSAGE = ("actions: pizza_actions.py: {kind} {name!r}: is a coroutine function (async def); "
                 "actions and conditions run synchronously (mark slow ones blocking=True)")


@pytest.mark.parametrize("kind, name, source", [
    ("action", "price_order", CALLED.replace("def price_order", "async def price_order")),
    ("condition", "size_on_menu", CALLED.replace("def size_on_menu", "async def size_on_menu")),
    ("action", "price", CALLED.replace("@action()\ndef price_order", "@action('price', blocking=True)\n"
                                                                    "async def price_order")),
    ("action", "price_order", BARE.replace("def price_order", "async def price_order")),
    ("condition", "size_on_menu", BARE.replace(  # an async generator: truthy, never awaited either
        "    return ctx.slots.get(\"size\") in (\"small\", \"large\")", "    yield True").replace(
        "def size_on_menu", "async def size_on_menu")),
    ("condition", "_size", "import functools\n" + BARE.replace(  # behind a wrapper, named as wraps names it
        "@condition\ndef size_on_menu(ctx, arg=None):\n",
        "async def _size(ctx, arg=None):\n    return True\n\n\n"
        "@condition\n@functools.wraps(_size)\ndef size_on_menu(ctx, arg=None):\n    return _size(ctx, arg)\n\n\n"
        "def _unused(ctx, arg=None):\n")),
])
def test_an_async_function_is_refused_when_registered(here, kind, name, source):
    write_bot(here, source)
    with pytest.raises(ConfigError) as raised:
        Registry.with_builtins().load("pizza_actions.py")
    assert str(raised.value) == ASYNC_MESSAGE.format(kind=kind, name=name)


def test_flows_check_reports_an_async_function_and_exits_2(here, capsys):
    write_bot(here, CALLED.replace("def size_on_menu", "async def size_on_menu"))
    assert run(["flows", "check", "--actions", "pizza_actions.py"]) == 2
    assert capsys.readouterr().err == "error: " + ASYNC_MESSAGE.format(kind="condition", name="size_on_menu") + "\n"


def test_serve_reports_an_async_function_and_starts_nothing(here, capsys):
    flows = write_bot(here, CALLED.replace("def price_order", "async def price_order"))
    # were the module accepted, this flow would still stop the server from starting
    (flows / "broken.yaml").write_text(PIZZA.replace("name: pizza", "name: broken").replace("dest: done", "dest: dnoe"),
                                       encoding="utf-8")
    assert run(["serve", "--port", "0", "--log-format", "none", "--actions", "pizza_actions.py"]) == 2
    assert capsys.readouterr().err == "error: " + ASYNC_MESSAGE.format(kind="action", name="price_order") + "\n"
    assert not (here / "data" / "chatbot.db").exists(), "nothing was started"


@pytest.mark.parametrize("kind, source", [
    ("action", BARE.replace("    ctx.say(f\"That", "    yield\n    ctx.say(f\"That")),
    ("condition", BARE.replace("    return ctx.slots.get(\"size\")", "    yield ctx.slots.get(\"size\")")),
])
def test_a_generator_function_is_refused_when_registered(here, kind, source):
    # Called, it would return a generator without running a line: an action that does nothing,
    # a condition that is always true.
    write_bot(here, source)
    name = "price_order" if kind == "action" else "size_on_menu"
    with pytest.raises(ConfigError) as raised:
        Registry.with_builtins().load("pizza_actions.py")
    assert str(raised.value) == (f"actions: pizza_actions.py: {kind} {name!r}: is a generator function (it uses "
                                 "yield); actions and conditions must run to the end when called")


def test_a_name_taken_twice_in_one_module_is_refused(here):
    write_bot(here, BARE + textwrap.dedent("""

        @action("price_order")
        def price_with_tax(ctx, arg=None):
            ctx.say("That is 10 euros.")
    """))
    with pytest.raises(ConfigError) as raised:
        Registry.with_builtins().load("pizza_actions.py")
    assert str(raised.value) == ("actions: pizza_actions.py: action 'price_order': is taken twice in this module "
                                 "(by price_order and price_with_tax); choose another name")


def test_a_built_in_name_is_refused(here):
    write_bot(here, BARE + textwrap.dedent("""

        @condition
        def credentials_valid(ctx, arg=None):
            return True
    """))
    with pytest.raises(ConfigError) as raised:
        Registry.with_builtins().load("pizza_actions.py")
    assert str(raised.value) == ("actions: pizza_actions.py: condition 'credentials_valid': is a built-in "
                                 "condition; choose another name")
    # and the same as the command line says it, starting nothing
    assert run(["flows", "check", "--actions", "pizza_actions.py"]) == 2


def test_a_name_taken_by_another_module_is_refused(here):
    write_bot(here, BARE)
    (here / "more_actions.py").write_text(textwrap.dedent("""
        from chatbot.dialogs import action


        @action
        def price_order(ctx, arg=None):
            ctx.say("Free pizza!")
    """), encoding="utf-8")
    registry = Registry.with_builtins()
    registry.load("pizza_actions.py")
    with pytest.raises(ConfigError) as raised:
        registry.load("more_actions.py")
    assert str(raised.value) == ("actions: more_actions.py: action 'price_order': is already taken by "
                                 "pizza_actions.py; choose another name")


def test_a_module_given_twice_is_loaded_once(here, capsys):
    write_bot(here, BARE + "\nfrom chatbot.dialogs.builtins import log_in  # the built-in itself, not a clash\n")
    registry = Registry.with_builtins()
    assert registry.load("pizza_actions.py") == 3
    assert registry.load(f"{here}/pizza_actions.py") == 3, "the same file, by another path"
    assert run(["flows", "check", "--actions", "pizza_actions.py", "--actions", "./pizza_actions.py"]) == 0
    assert "ok  pizza" in capsys.readouterr().out


@pytest.mark.parametrize("decorator, message", [
    ("@action(5)", "action 5: the name must be text (letters, digits, _, at most 64 characters)"),
    ("@action('has:x')", "action 'has:x': invalid name (letters, digits, _, at most 64 characters); "
                         "a flow writes it as `name` or `name:argument`"),
    ("@action('with space')", "action 'with space': invalid name (letters, digits, _, at most 64 characters); "
                              "a flow writes it as `name` or `name:argument`"),
    ("@condition('')", "condition '': invalid name (letters, digits, _, at most 64 characters); "
                       "a flow writes it as `name` or `name:argument`"),
    # a text would be iterated into the slots t, o, a, l
    ("@action(sets='total')", "action 'extra': sets='total': must be a tuple of slot names "
                              "(letters, digits, _, at most 64 characters), e.g. sets=('total',)"),
    ("@action(sets=('total', 5))", "action 'extra': sets=('total', 5): must be a tuple of slot names "
                                   "(letters, digits, _, at most 64 characters), e.g. sets=('total',)"),
    ("@action(blocking='no')", "action 'extra': blocking='no': must be True or False"),
])
def test_a_name_no_flow_can_write_or_a_malformed_sets_is_refused_when_registered(here, decorator, message):
    write_bot(here, CALLED + f"\n\n{decorator}\ndef extra(ctx, arg=None):\n    pass\n")
    with pytest.raises(ConfigError) as raised:
        Registry.with_builtins().load("pizza_actions.py")
    assert str(raised.value) == "actions: pizza_actions.py: " + message


def test_flows_check_reports_a_name_that_is_not_text_and_exits_2(here, capsys):
    # accepted, it used to crash the command with a TypeError when the names were sorted
    write_bot(here, CALLED.replace("@action()", "@action(5)"))
    assert run(["flows", "check", "--actions", "pizza_actions.py"]) == 2
    assert capsys.readouterr().err == ("error: actions: pizza_actions.py: action 5: the name must be text "
                                       "(letters, digits, _, at most 64 characters)\n")


def test_flows_check_reports_a_module_that_exits_when_imported(here, capsys):
    write_bot(here, "import sys\nsys.exit(3)\n")
    assert run(["flows", "check", "--actions", "pizza_actions.py"]) == 2, "not the module's own exit status"
    assert capsys.readouterr().err == "error: actions: pizza_actions.py: import failed: SystemExit: 3\n"


# One function that takes no argument, one that needs one.
WITH_ARGUMENTS = BARE + textwrap.dedent("""

    @action
    def no_arg(ctx):
        pass


    @condition
    def needs_arg(ctx, arg):
        return True
""")


def test_a_callable_tells_whether_a_flow_may_or_must_give_it_an_argument(here):
    write_bot(here, WITH_ARGUMENTS + textwrap.dedent("""

        @action
        def any_args(*args):
            pass
    """))
    registry = Registry.with_builtins()
    registry.load("pizza_actions.py")
    found = {name: (cb.takes_arg, cb.needs_arg) for name, cb in {**registry.actions, **registry.conditions}.items()}
    assert found["price_order"] == (True, False)
    # The built-ins say what they take: `has:SLOT` needs its slot, `forget` may name one, `log_in` takes none.
    assert (found["has"], found["forget"], found["log_in"]) == ((True, True), (True, False), (False, False))
    assert found["no_arg"] == (False, False)
    assert found["needs_arg"] == (True, True)
    assert found["any_args"] == (True, False)


@pytest.mark.parametrize("signature", ["()", "(ctx, arg, more)"])
def test_a_function_a_flow_cannot_call_is_refused_when_registered(here, signature):
    write_bot(here, CALLED.replace("def price_order(ctx, arg=None)", f"def price_order{signature}"))
    with pytest.raises(ConfigError) as raised:
        Registry.with_builtins().load("pizza_actions.py")
    assert str(raised.value) == ("actions: pizza_actions.py: action 'price_order': cannot be called as f(ctx) "
                                 "nor as f(ctx, arg); write it as def price_order(ctx, arg=None)")


def test_flows_check_refuses_an_argument_a_function_cannot_take_one_it_must_and_an_empty_one(here, capsys):
    flows = write_bot(here, WITH_ARGUMENTS)
    (flows / "pizza.yaml").write_text(PIZZA.replace("    before: price_order\n",
                                                    "    before: [price_order, 'no_arg:1', 'forget:', 'log_in:bob']\n"
                                                    "    conditions: [needs_arg, has, 'needs_arg: ']\n"),
                                      encoding="utf-8")
    assert run(["flows", "check", "--actions", "pizza_actions.py"]) == 1
    err = capsys.readouterr().err
    assert "transitions[0].before[1]: action 'no_arg' takes no argument (written 'no_arg:1')" in err
    assert "transitions[0].conditions[0]: condition 'needs_arg' needs an argument: write 'needs_arg:…'" in err
    # The built-ins are held to what they take: `has` needs its slot, `log_in` takes nothing.
    assert "transitions[0].before[2]: action 'forget': nothing after ':' (written 'forget:')" in err
    assert "transitions[0].before[3]: action 'log_in' takes no argument (written 'log_in:bob')" in err
    assert "transitions[0].conditions[1]: condition 'has' needs an argument: write 'has:…'" in err
    assert "transitions[0].conditions[2]: condition 'needs_arg': nothing after ':' (written 'needs_arg: ')" in err
