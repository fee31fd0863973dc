"""The example bot of docs/flows.md (examples/pizza): it validates and a whole order works."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.cli import main
from chatbot.dialogs import Registry
from tests.engine_helpers import Conversation, make_engine

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pizza"
ACTIONS = str(EXAMPLE / "pizza_actions.py")


@pytest.fixture(scope="module")
def engine():
    registry = Registry.with_builtins()
    registry.load(ACTIONS)
    return make_engine(EXAMPLE / "flows", registry)


def logged_in(engine, lang: str = "en") -> Conversation:
    chat = Conversation(engine, lang=lang)
    chat.register("ann" if lang == "en" else "аня")
    return chat


def test_flows_check_passes_on_the_example(capsys):
    with pytest.raises(SystemExit) as done:
        main(["flows", "check", str(EXAMPLE / "flows"), "--actions", ACTIONS])
    assert done.value.code in (0, None)
    assert "ok  pizza" in capsys.readouterr().out


def test_a_whole_order_in_english(engine):
    chat = logged_in(engine)
    chat.world.clock = 1_790_012_345.0
    chat.say("/pizza")
    assert chat.texts == ["What size would you like: small, medium or large?"]
    assert [action for _, action in chat.result.replies[0].buttons] == ["cancel"]
    chat.say("a gigantic one")
    assert chat.texts == ["We make small, medium and large pizzas. Which one?"]
    assert chat.where == "pizza:ask_size"
    chat.say("Large")
    assert chat.texts == ["How many Large pizzas?"]
    chat.say("eleven")
    assert chat.texts == ["A whole number from 1 to 10, please."]
    chat.say("12")
    assert chat.texts == ["A whole number from 1 to 10, please."]
    chat.say("2 please")
    assert chat.where == "pizza:ask_email"
    chat.say("ann at example")
    assert chat.texts == ["That does not look like an e-mail address. Try again?"]
    chat.say("it is Ann@Example.COM")
    assert chat.texts == ["2 × Large, 24 € in all, receipt to Ann@example.com. Shall I order?"]
    assert [action for _, action in chat.result.replies[0].buttons] == ["yes", "no"]
    chat.say("maybe")
    assert chat.texts == ["Please answer with Yes or No."]
    assert chat.where == "pizza:confirm"
    chat.press("yes")
    assert chat.texts[0] == "Order P-12345 is in the oven. Enjoy, ann!"
    assert chat.where == "chat:listening"
    assert chat.state.slots["order_number"] == "P-12345"


def test_a_whole_order_in_russian(engine):
    chat = logged_in(engine, "ru")
    chat.say("/pizza")
    assert chat.texts == ["Какой размер: маленькая, средняя или большая?"]
    chat.say("среднюю")
    chat.say("3")
    chat.say("аня@пример.рф")
    assert chat.texts == ["3 × среднюю, всего 30 €, чек на аня@пример.рф. Заказываем?"]
    chat.say("да")
    assert chat.texts[0] == "Заказ P-00000 уже в печи. Приятного аппетита, аня!"


def test_cancel_by_button_or_by_word_returns_to_chat(engine):
    chat = logged_in(engine)
    chat.say("/pizza")
    chat.press("cancel")
    assert chat.texts[0] == "OK, no pizza this time."
    assert chat.where == "chat:listening"
    chat.say("/pizza")
    chat.say("small")
    chat.say("never mind")
    assert chat.where == "chat:listening"


def test_doubt_at_the_confirmation_is_no_and_an_address_with_stop_in_it_is_an_address(engine):
    chat = logged_in(engine)
    chat.say("/pizza")
    chat.say("small")
    chat.say("1" * 5000)  # no count that long: asked again, not a crash
    assert chat.texts == ["A whole number from 1 to 10, please."]
    chat.say("1")
    chat.say("stop@example.com")  # an e-mail address, though 'stop' is a word of 'cancel'
    assert chat.where == "pizza:confirm"
    chat.say("not sure")
    assert chat.where == "chat:listening" and chat.state.slots.get("order_number") is None
    chat.say("/pizza")
    chat.say("small")
    chat.say("1")
    chat.say("anna.stops@mail.com")
    assert chat.where == "pizza:confirm"
    chat.say("please don't order")
    assert chat.where == "chat:listening" and chat.state.slots.get("order_number") is None
    chat.say("/pizza")
    chat.say("stop")  # alone, it still cancels
    assert chat.where == "chat:listening"


def test_the_entry_is_for_logged_in_users_and_is_listed_by_help(engine):
    chat = Conversation(engine)
    chat.say("/pizza")
    assert chat.texts[0] == "Please log in first: type /login or /register."
    assert chat.where == "hub:welcome"
    chat.register()
    chat.say("/help")
    assert chat.texts[1] == "You can also start: /pizza — order a pizza."
    chat.press("flow:pizza")
    assert chat.where == "pizza:ask_size"


DOC = Path(__file__).resolve().parent.parent / "docs" / "flows.md"


def _doc_block(after: str, language: str) -> str:
    return DOC.read_text(encoding="utf-8").split(after, 1)[1].split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_worked_example_in_the_docs_is_the_example_bot():
    flow = (EXAMPLE / "flows" / "pizza.yaml").read_text(encoding="utf-8")
    assert flow.endswith(_doc_block("### The flow", "yaml"))
    module = (EXAMPLE / "pizza_actions.py").read_text(encoding="utf-8")
    assert module.endswith(_doc_block("### The actions module", "python"))


def test_the_diagram_in_the_docs_is_what_flows_draw_prints(capsys):
    with pytest.raises(SystemExit):
        main(["flows", "draw", "pizza", "--flows", str(EXAMPLE / "flows"), "--actions", ACTIONS])
    assert capsys.readouterr().out == _doc_block("### Checking and drawing it", "mermaid")


def order_up_to_the_confirmation(engine, lang: str, size: str = "large") -> Conversation:
    chat = logged_in(engine, lang)
    chat.say("/pizza")
    chat.say(size)
    chat.say("2")
    chat.say("ann@example.com")
    assert chat.where == "pizza:confirm", chat.texts
    return chat


@pytest.mark.parametrize("text, lang, size", [
    ("a large", "en", "large"), ("I'd like a medium", "en", "medium"), ("the small one", "en", "small"),
    ("одну большую", "ru", "большую"), ("давайте среднюю", "ru", "среднюю"),
])
def test_a_size_is_found_anywhere_in_the_answer(engine, text, lang, size):
    chat = logged_in(engine, lang)
    chat.say("/pizza")
    chat.say(text)
    assert chat.where == "pizza:ask_count" and chat.state.slots["size"] == size, chat.texts


@pytest.mark.parametrize("text, lang", [
    ("yeah", "en"), ("okay", "en"), ("go ahead", "en"), ("👍", "en"),
    ("конечно, не откажусь", "ru"), ("да не вопрос", "ru"), ("заказать", "ru"), ("давай", "ru"), ("угу", "ru"),
])
def test_the_usual_ways_of_saying_yes_order(engine, text, lang):
    chat = order_up_to_the_confirmation(engine, lang)
    chat.say(text)
    assert chat.state.slots.get("order_number", "").startswith("P-"), chat.texts


@pytest.mark.parametrize("text, lang", [("nope", "en"), ("неа", "ru"), ("не надо", "ru"), ("nevermind", "en")])
def test_the_usual_ways_of_saying_no_do_not_order(engine, text, lang):
    chat = order_up_to_the_confirmation(engine, lang)
    chat.say(text)
    assert chat.where == "chat:listening" and chat.state.slots.get("order_number") is None, chat.texts
