"""The dialog engine through every built-in flow, with an injected deterministic world."""

from __future__ import annotations

import collections
import dataclasses

import pytest

from chatbot.dialogs import Action, Engine, PatternTimeout, Registry, ScriptedEnvironment, Text, load_flows
from chatbot.dialogs.model import FlowSpec
from tests.engine_helpers import Conversation, MemoryWorld, make_engine


@pytest.fixture(scope="module")
def engine():
    return make_engine()


def test_a_new_session_is_greeted_in_the_hub_with_login_and_register_buttons(engine):
    chat = Conversation(engine)
    assert chat.where == "hub:welcome"
    assert chat.texts == ["Hello! I am your chat bot. Do you want to log in or register?"]
    assert [action for _, action in chat.result.replies[0].buttons] == ["login", "register"]


def test_registration_creates_the_account_logs_in_and_moves_to_chat(engine):
    chat = Conversation(engine)
    chat.say("I want to sign up")
    assert chat.where == "registration:ask_username"
    chat.say("ann")
    assert chat.where == "registration:ask_password"
    assert chat.result.replies[-1].input == "password"
    chat.say("correct horse")
    assert chat.where == "registration:ask_confirm"
    chat.say("correct horse")
    assert chat.where == "chat:listening"
    assert chat.state.user == "ann"
    assert chat.result.auth_changed
    assert chat.texts[0] == "Your account is ready, ann. You are logged in."
    assert chat.world.users["ann"] == ("ann", "correct horse")
    assert chat.state.secrets == {}, "secrets must not outlive the step that needed them"


def test_registration_rejects_a_bad_username_a_taken_one_and_a_short_password(engine):
    chat = Conversation(engine)
    chat.world.users["bob"] = ("Bob", "whatever1")
    chat.press("register")
    chat.say("x!")
    assert chat.texts[0] == "That username will not do."
    assert chat.where == "registration:ask_username"
    chat.say("BOB")
    assert chat.texts[0] == "The username BOB is already taken."
    chat.say("carol")
    chat.say("short")
    assert chat.texts[0] == "That password does not fit the rules."
    assert chat.where == "registration:ask_password"


def test_mismatched_confirmation_asks_for_the_password_again(engine):
    chat = Conversation(engine)
    chat.press("register")
    chat.say("dave")
    chat.say("first password")
    chat.say("other password")
    assert chat.where == "registration:ask_password"
    assert chat.texts[0].startswith("The passwords do not match")
    assert "dave" not in chat.world.users


def test_login_success_and_the_same_generic_failure_for_unknown_user_and_wrong_password(engine):
    world = MemoryWorld()
    world.users["ann"] = ("Ann", "correct horse")
    failures = []
    for username, password in [("ann", "wrong password"), ("nobody", "correct horse")]:
        chat = Conversation(engine, world)
        chat.press("login")
        chat.say(username)
        chat.say(password)
        failures.append(chat.texts)
        assert chat.where == "login:ask_username"
    assert failures[0] == failures[1]
    chat = Conversation(engine, world)
    chat.press("login")
    chat.say("ANN")
    chat.say("correct horse")
    assert chat.where == "chat:listening"
    assert chat.state.user == "Ann"
    assert chat.texts[0] == "Welcome back, Ann!"


def test_throttled_login_says_so(engine):
    world = MemoryWorld()
    world.failures = 3
    chat = Conversation(engine, world)
    chat.press("login")
    chat.say("ann")
    chat.say("whatever")
    assert chat.texts[0].startswith("Too many failed attempts")


def test_password_input_never_reaches_slots_or_records(engine):
    chat = Conversation(engine)
    chat.register(password="hunter2hunter2")
    chat.press("logout")
    chat.press("login")
    chat.say("ann")
    result = chat.say("hunter2hunter2")
    assert result.secret_input
    flat = repr(dataclasses.asdict(result))
    assert "hunter2" not in flat


def test_chat_intents_with_slots(engine):
    chat = Conversation(engine)
    chat.register()
    chat.say("Who am I?")
    assert chat.texts == ["You are logged in as ann."]
    chat.say("what's my name")
    assert chat.texts[0].startswith("You have not told me what to call you yet")
    chat.say("Call me Annie")
    assert chat.texts == ["Nice to meet you, Annie! I will remember that."]
    assert chat.state.slots["nickname"] == "Annie"
    chat.say("remind me my name please")
    assert chat.texts == ["You asked me to call you Annie."]
    chat.say("who am i")
    assert chat.texts == ["You are logged in as ann, and I call you Annie."]
    chat.say("forget my name")
    assert "nickname" not in chat.state.slots


def test_chat_uses_the_injected_clock(engine):
    chat = Conversation(engine)
    chat.register()
    chat.world.clock = 0.0
    chat.say("what time is it?")
    assert chat.texts == ["It is 00:00 UTC on 1970-01-01."]
    assert {"name": "now", "result": 0.0} in chat.result.effects


def test_russian_conversation(engine):
    chat = Conversation(engine, lang="ru")
    assert chat.texts[0].startswith("Здравствуйте!")
    chat.say("Регистрация")
    assert chat.texts == ["Выберите имя пользователя: от 3 до 32 букв, цифр, «_», «-» или «.»."]
    chat.say("аня")
    chat.say("пароль-пароль")
    chat.say("пароль-пароль")
    assert chat.state.user == "аня"
    chat.say("Привет!")
    assert chat.texts == ["Привет, аня!"]
    chat.say("зови меня Анюта")
    assert chat.texts == ["Приятно познакомиться, Анюта! Я запомню."]
    chat.say("как меня зовут?")
    assert chat.texts == ["Вы просили называть вас Анюта."]
    chat.say("выйти")
    assert chat.where == "hub:welcome"
    assert chat.state.user is None


def test_commands_work_everywhere(engine):
    chat = Conversation(engine)
    chat.press("login")
    chat.say("/lang ru")
    assert chat.texts == ["Буду говорить по-русски.", "Как ваше имя пользователя?"]
    chat.say("/help")
    assert chat.texts[0].startswith("Введите имя пользователя")
    chat.say("/lang xx")
    assert chat.texts[0] == "Я говорю на этих языках: en, ru."
    chat.say("/nope")  # refused like anything else the state cannot take: its question again
    assert chat.texts == ["Я не знаю команды /nope. Наберите /help, чтобы увидеть список.", "Как ваше имя пользователя?"]
    assert [action for _, action in chat.result.replies[-1].buttons] == ["cancel"]
    chat.say("/start")
    assert chat.where == "hub:welcome"


@pytest.mark.parametrize("lang, unknown", [
    ("en", "I do not know the command /ann. Type /help for the list."),
    ("ru", "Я не знаю команды /ann. Наберите /help, чтобы увидеть список."),
])
def test_an_unknown_command_asks_the_question_again_with_its_buttons(engine, lang, unknown):
    chat = Conversation(engine, lang=lang)
    chat.press("register")
    question = chat.texts[-1]
    chat.say("/ann")
    assert chat.where == "registration:ask_username"
    assert chat.texts == [unknown, question]
    assert [action for _, action in chat.result.replies[-1].buttons] == ["cancel"]
    chat.say("/Nope")  # in the hub too: the welcome and its Log in / Register buttons
    chat.press("cancel")
    chat.say("/nope")
    assert chat.where == "hub:welcome" and len(chat.texts) == 2
    assert [action for _, action in chat.result.replies[-1].buttons] == ["login", "register"]


@pytest.mark.parametrize("action", ["lang:RU", "lang:Ru"])
def test_a_language_action_is_case_insensitive_as_the_command_is(engine, action):
    chat = Conversation(engine)
    chat.press(action)
    assert chat.state.lang == "ru"
    assert chat.texts[0] == "Буду говорить по-русски."
    chat.press("lang:EN")
    assert chat.state.lang == "en"


def test_logout_command_and_button_end_the_login(engine):
    chat = Conversation(engine)
    chat.register()
    chat.say("/logout")
    assert chat.state.user is None and chat.result.auth_changed
    assert chat.where == "hub:welcome"
    assert chat.state.slots == {}
    chat.say("/logout")
    assert chat.texts[0] == "You are not logged in."


def test_login_while_logged_in_is_refused(engine):
    chat = Conversation(engine)
    chat.register()
    chat.press("login")
    assert chat.texts[0].startswith("You are already logged in as ann")
    assert chat.where == "chat:listening"


def test_unmatched_text_gets_the_fallback_and_the_state_stays(engine):
    chat = Conversation(engine)
    chat.register()
    chat.say("qwrtzx plmk")
    assert chat.texts == ["I did not get that. Try 'what can you do'."]
    assert chat.where == "chat:listening"
    assert chat.result.replies[0].buttons, "the fallback keeps the state's buttons"


def test_cancel_button_in_password_state_and_password_text_is_never_an_intent(engine):
    chat = Conversation(engine)
    chat.press("login")
    chat.say("ann")
    chat.say("cancel")  # a password that happens to read like an intent
    assert chat.where == "login:ask_username"  # treated as a (wrong) password
    chat.say("ann")
    chat.press("cancel")
    assert chat.where == "hub:welcome"


def test_unknown_button_action_is_answered_not_fired(engine):
    chat = Conversation(engine)
    chat.press("to_chat")
    assert chat.texts[0] == "That button is no longer active."
    assert chat.where == "hub:welcome"


def test_a_session_whose_state_vanished_moves_to_the_fallback_state(engine):
    chat = Conversation(engine)
    stale = dataclasses.replace(chat.state, flow="login", state="ask_pasword", flow_version="old")
    result = engine.handle(stale, Text("hello"), chat.world)
    assert result.state.state == "ask_username"
    assert result.replies[0].text.startswith("This conversation was updated")
    gone = dataclasses.replace(chat.state, flow="pizza", state="ask_size")
    result = engine.handle(gone, Action("x"), chat.world)
    assert result.state.flow == "hub"


def test_a_text_typed_into_a_state_that_vanished_is_kept_secret(engine):
    # The page may still show the password box of a state an update renamed: what is typed
    # there is dropped unread, and must be masked in history and logs like a password.
    chat = Conversation(engine)
    renamed = dataclasses.replace(chat.state, flow="registration", state="ask_passwd", flow_version="old")
    assert engine.input_kind(renamed) == "password"
    assert engine.handle(renamed, Text("Correct Horse 99"), chat.world).secret_input is True
    assert engine.handle(renamed, Action("help"), chat.world).secret_input is False
    gone = dataclasses.replace(chat.state, flow="removed", state="ask_pin")
    assert engine.input_kind(gone) == "password"
    assert engine.handle(gone, Text("1234"), chat.world).secret_input is True
    assert engine.input_kind(chat.state) == "text"


def test_every_reply_carries_the_input_kind_of_the_final_state(engine):
    chat = Conversation(engine)
    chat.press("login")
    result = chat.say("ann")
    assert {reply.input for reply in result.replies} == {"password"}


def test_a_turn_replayed_with_its_recorded_effects_gives_the_same_result(engine):
    chat = Conversation(engine)
    chat.register()
    before = chat.state
    live = chat.say("tell me a joke")
    replayed = engine.handle(before, Text("tell me a joke"), ScriptedEnvironment(live.effects))
    assert replayed.replies == live.replies
    assert replayed.transitions == live.transitions


def test_login_and_register_commands_work_from_inside_another_flow(engine):
    chat = Conversation(engine)
    chat.press("login")
    chat.say("/register")
    assert chat.where == "registration:ask_username"
    chat.press("login")
    assert chat.where == "login:ask_username"


def test_a_text_action_cannot_skip_what_a_state_captures(engine):
    chat = Conversation(engine)
    chat.press("login")
    chat.press("text")
    assert chat.where == "login:ask_username"
    assert chat.texts[0] == "That button is no longer active."


def test_may_block_only_where_a_blocking_check_can_run(engine):
    def blocks(flow, state):
        session = engine.new_session()
        session.flow, session.state = flow, state
        return engine.may_block(session)

    assert not blocks("hub", "welcome")
    assert not blocks("chat", "listening")
    assert blocks("login", "ask_password")
    assert blocks("registration", "ask_username")
    assert blocks("registration", "ask_confirm")
    assert blocks("pizza", "ask_size"), "an unknown flow is assumed to block"


def test_a_flow_without_an_entry_cannot_be_started_by_a_button(engine):
    chat = Conversation(engine)
    chat.press("flow:registration")
    assert chat.texts[0] == "That button is no longer active."
    assert chat.where == "hub:welcome"


def test_a_states_actions_run_before_it_speaks_so_its_text_can_show_what_they_set(tmp_path):
    (tmp_path / "clock.yaml").write_text(
        "name: clock\nlanguages: [en]\ninitial: show\nentry: {command: /clock}\n"
        "states:\n  - name: show\n    on_enter: tell_time\n    say: 'It is {time}.'\n    goto: chat\n",
        encoding="utf-8")
    chat = Conversation(make_engine(tmp_path))
    chat.register()
    chat.world.clock = 3600.0
    chat.say("/clock")
    assert chat.texts[0] == "It is 01:00."
    assert chat.where == "chat:listening"


def test_set_language_without_an_argument_takes_the_language_a_flow_captured(tmp_path):
    (tmp_path / "pick.yaml").write_text(
        "name: pick\nlanguages: [en, ru]\ninitial: ask\nentry: {command: /pick}\n"
        "states:\n  - name: ask\n    say: {en: 'Which language?', ru: 'Какой язык?'}\n"
        "    capture: {slot: language}\n"
        "  - name: done\n    on_enter: set_language\n    say: {en: 'Language: {lang}.', ru: 'Язык: {lang}.'}\n"
        "    goto: chat\n"
        "transitions:\n  - {trigger: text, source: ask, dest: done}\n",
        encoding="utf-8")
    chat = Conversation(make_engine(tmp_path))
    chat.register()
    chat.say("/pick")
    chat.say(" RU ")
    assert chat.texts[0] == "Язык: ru."
    assert chat.state.lang == "ru"


def test_the_show_help_action_leaves_the_question_to_the_state_it_leads_into(tmp_path):
    (tmp_path / "quiz.yaml").write_text(
        "name: quiz\nlanguages: [en]\ninitial: ask\nentry: {command: /quiz}\nhelp: 'Answer with a number.'\n"
        "intents:\n  confused: {keywords: {en: [confused]}}\n  lost: {keywords: {en: [lost]}}\n"
        "states:\n  - name: ask\n    on_enter: show_help\n    say: 'How many legs has a cat?'\n"
        "    capture: {slot: legs}\n"
        "  - name: done\n    say: 'Noted.'\n    goto: chat\n"
        "transitions:\n  - {trigger: confused, source: ask, dest: ask}\n"
        "  - {trigger: lost, source: ask, dest: null, after: show_help}\n"
        "  - {trigger: text, source: ask, dest: done}\n",
        encoding="utf-8")
    chat = Conversation(make_engine(tmp_path))
    chat.register()
    chat.say("/quiz")
    assert chat.texts == ["Answer with a number.", "How many legs has a cat?"]
    chat.say("confused")
    assert chat.texts == ["Answer with a number.", "How many legs has a cat?"]
    chat.say("lost")  # no state is entered: the help, then the question still open
    assert chat.texts == ["Answer with a number.", "How many legs has a cat?"]
    chat.say("/help")
    assert chat.texts == ["Answer with a number.", "How many legs has a cat?"], "the command asks again itself"


def test_a_pattern_that_runs_away_fails_the_turn_naming_its_file_line_and_key(tmp_path):
    (tmp_path / "echo.yaml").write_text(
        "name: echo\nlanguages: [en]\ninitial: ask\nentry: {command: /echo}\n"
        "intents:\n  many_a:\n    patterns:\n      en: ['^(a|aa)+$']\n"
        "states:\n  - name: ask\n    say: 'Say something.'\n"
        "    capture: {slot: said, kind: regex, pattern: '^(b|bb)+$'}\n"
        "  - name: done\n    say: 'Heard.'\n    goto: chat\n"
        "transitions:\n  - {trigger: many_a, source: ask, dest: done}\n"
        "  - {trigger: text, source: ask, dest: done}\n",
        encoding="utf-8")
    chat = Conversation(make_engine(tmp_path))
    chat.register()
    chat.say("/echo")
    before = chat.state
    with pytest.raises(PatternTimeout) as intent:
        chat.engine.handle(before, Text("a" * 40 + "c"), chat.world)
    assert intent.value.where == f"{tmp_path / 'echo.yaml'}:8: intents.many_a.patterns.en[0]"
    with pytest.raises(PatternTimeout) as capture:
        chat.engine.handle(before, Text("b" * 40 + "c"), chat.world)
    assert capture.value.where == f"{tmp_path / 'echo.yaml'}:12: states[0].capture.pattern"
    chat.say("aaaa")
    assert chat.texts[0] == "Heard."


@pytest.mark.parametrize("access, anonymous, logged_in", [
    ("users", "Please log in first: type /login or /register.", "Tea or coffee?"),
    ("guests", "Tea or coffee?", "You are already logged in as ann. Log out first to switch accounts."),
    ("anyone", "Tea or coffee?", "Tea or coffee?"),
])
def test_an_entry_admits_whom_its_access_says(tmp_path, access, anonymous, logged_in):
    (tmp_path / "drinks.yaml").write_text(
        f"name: drinks\nlanguages: [en]\ninitial: ask\nentry: {{command: /drinks, access: {access}}}\n"
        "states:\n  - name: ask\n    say: 'Tea or coffee?'\n    final: true\n", encoding="utf-8")
    engine = make_engine(tmp_path)
    chat = Conversation(engine)
    chat.say("/drinks")
    assert chat.texts[0] == anonymous
    chat = Conversation(engine)
    chat.register()
    chat.press("flow:drinks")
    assert chat.texts[0] == logged_in


def test_a_copied_session_state_has_every_field_and_its_own_dicts():
    from chatbot.dialogs import SessionState

    values = {"flow": "chat", "state": "idle", "slots": {"nickname": "Ann"}, "lang": "ru", "user": "ann",
              "flow_version": "v2", "secrets": {"password": "x"}}
    assert {f.name for f in dataclasses.fields(SessionState)} == set(values), "a new field: copy() must take it"
    state = SessionState(**values)
    copied = state.copy()
    assert copied == state
    assert copied.slots is not state.slots and copied.secrets is not state.secrets


def test_replies_are_copied_with_every_field():
    from chatbot.dialogs import Reply

    # The engine copies each reply with its state's input kind: a new field must be copied there too.
    assert [f.name for f in dataclasses.fields(Reply)] == ["text", "buttons", "input"]


def test_an_entry_title_is_listed_with_its_placeholders_filled(tmp_path):
    (tmp_path / "shop.yaml").write_text(
        "name: shop\nlanguages: [en]\ninitial: ask\n"
        "entry: {command: /shop, access: anyone, title: 'shop for {user} ({{lang}}: {lang})'}\n"
        "states:\n  - name: ask\n    say: 'What to buy?'\n    final: true\n", encoding="utf-8")
    chat = Conversation(make_engine(tmp_path))
    chat.register()
    chat.say("/help")
    assert "You can also start: /shop — shop for ann ({lang}: en)." in chat.texts


def test_a_typed_command_is_handled_by_the_flow_first_as_its_button_is(tmp_path):
    (tmp_path / "shop.yaml").write_text(
        "name: shop\nlanguages: [en]\ninitial: ask\nentry: {command: /shop, access: anyone}\n"
        "states:\n  - name: ask\n    say: 'What to buy?'\n    buttons: [{label: Help, action: help}]\n"
        "    final: true\n"
        "transitions:\n  - {trigger: help, source: ask, dest: null, say: 'Hint: name a fruit.'}\n",
        encoding="utf-8")
    chat = Conversation(make_engine(tmp_path))
    chat.say("/shop")
    chat.press("help")
    assert chat.texts == ["Hint: name a fruit."]
    chat.say("/help")
    assert chat.texts == ["Hint: name a fruit."]
    assert chat.where == "shop:ask"
    chat.say("/start")
    assert chat.where == "hub:welcome", "an action the flow does not handle does what it always does"


def test_switching_to_a_language_the_engine_has_no_text_in_names_that_language(tmp_path):
    (tmp_path / "gruss.yaml").write_text(
        "name: gruss\nlanguages: [de]\ninitial: hallo\nentry: {command: /gruss, access: anyone}\n"
        "states:\n  - name: hallo\n    say: 'Hallo!'\n    final: true\n", encoding="utf-8")
    chat = Conversation(make_engine(tmp_path))
    chat.say("/lang de")
    assert chat.texts[0] == "Language: de."
    assert chat.state.lang == "de"
    chat.say("/lang en")
    assert chat.texts[0] == "I will speak English."
    chat.say("/lang ru")
    assert chat.texts[0] == "Буду говорить по-русски."


def test_a_slot_an_action_sets_reads_the_same_before_and_after_storage_or_the_action_fails(tmp_path):
    import datetime
    import decimal

    from chatbot.dialogs import Registry, action
    from chatbot.dialogs.registry import MARK

    values = {"when": datetime.datetime(2024, 1, 2, 3, 4, 5), "price": decimal.Decimal("1.5")}

    @action(sets=("when", "price"))
    def stamp(ctx, slot):
        ctx.set_slot(slot, values[slot])

    registry = Registry.with_builtins()
    registry.add(getattr(stamp, MARK))
    (tmp_path / "stamp.yaml").write_text(
        "name: stamp\nlanguages: [en]\ninitial: ask\nentry: {command: /stamp}\n"
        "states:\n  - name: ask\n    say: 'Which?'\n    buttons: [{label: When, action: when}, {label: Price, action: price}]\n"
        "  - name: done\n    say: 'Stamped {when}.'\n    goto: chat\n"
        "transitions:\n  - {trigger: when, source: ask, dest: done, before: 'stamp:when'}\n"
        "  - {trigger: price, source: ask, dest: done, before: 'stamp:price'}\n",
        encoding="utf-8")
    chat = Conversation(make_engine(tmp_path, registry))
    chat.register()
    chat.say("/stamp")
    asked = chat.state
    with pytest.raises(TypeError, match=r"^set_slot\('price'\): a Decimal cannot be kept in a slot"):
        chat.press("price")
    assert chat.state == asked, "the failed turn changed nothing"
    chat.press("when")
    assert chat.texts[0] == "Stamped 2024-01-02T03:04:05."
    assert chat.state.slots["when"] == "2024-01-02T03:04:05"
    assert chat.result.slots_set == [{"slot": "when", "value": "2024-01-02T03:04:05"}]


def test_start_up_reads_the_sources_of_each_transition_once(tmp_path, monkeypatch):
    # Scanning every transition for every state made a flow of 15,000 states take 23 s to start.
    count = 200
    states = "".join(f"  - {{name: s{i}, say: 'state {i}'}}\n" for i in range(count))
    transitions = "".join(f"  - {{trigger: next, source: s{i}, dest: s{i + 1}}}\n" for i in range(count - 1))
    (tmp_path / "row.yaml").write_text(
        "name: row\nlanguages: [en]\ninitial: s0\nentry: {command: /row}\n"
        "intents:\n  next: {keywords: [next]}\n"
        f"states:\n{states}"
        f"transitions:\n{transitions}"
        "  - {trigger: text, source: s5, dest: s6, conditions: username_available}\n"  # a blocking one
        "  - {trigger: next, source: '*', dest: s0, conditions: logged_in}\n",
        encoding="utf-8")
    registry = Registry.with_builtins()
    flows = load_flows(tmp_path, registry)
    read = collections.Counter()
    sources_of = FlowSpec.sources_of
    monkeypatch.setattr(FlowSpec, "sources_of", lambda flow, t: read.update([flow.name]) or sources_of(flow, t))
    engine = Engine(flows, registry)
    assert read["row"] == count + 1
    runtime = engine.runtimes["row"]
    assert runtime.triggers["s5"] == ["next", "text"]
    assert runtime.triggers[f"s{count - 1}"] == ["next"], "only the one from every state"
    assert [state for state, blocks in runtime.blocking.items() if blocks] == ["s5"]


def _flow_with_actions(tmp_path, **actions):
    """A flow `/try` whose state has one button per action, each running it before the state says 'Done.'."""
    from chatbot.dialogs import action
    from chatbot.dialogs.registry import MARK

    registry = Registry.with_builtins()
    for name, func in actions.items():
        func.__name__ = name
        registry.add(getattr(action()(func), MARK))
    buttons = ", ".join(f"{{label: {{en: {name}, ru: {name}}}, action: {name}}}" for name in actions)
    transitions = "".join(f"  - {{trigger: {name}, source: ask, dest: done, before: {name}}}\n" for name in actions)
    (tmp_path / "try.yaml").write_text(
        "name: try\nlanguages: [en, ru]\ninitial: ask\nentry: {command: /try}\n"
        f"states:\n  - name: ask\n    say: {{en: 'Which?', ru: 'Какую?'}}\n    buttons: [{buttons}]\n"
        "  - name: done\n    say: {en: 'Done.', ru: 'Готово.'}\n    goto: chat\n"
        f"transitions:\n{transitions}",
        encoding="utf-8")
    chat = Conversation(make_engine(tmp_path, registry))
    chat.register()
    chat.say("/try")
    return chat


def test_an_action_says_a_message_written_as_a_flow_writes_one(tmp_path):
    chat = _flow_with_actions(
        tmp_path,
        per_language=lambda ctx: ctx.say({"en": "Hello {name}!", "ru": "Привет, {name}!"}, name="Ann"),
        variants=lambda ctx: ctx.say(["First {name}", "Second {name}"], name="Bob"),
        per_language_variants=lambda ctx: ctx.say({"en": ["Hi!", "Hello!"], "ru": ["Привет!"]}),
        english_only=lambda ctx: ctx.say({"en": "Only English."}),
    )
    asked = chat.state
    chat.press("per_language")
    assert chat.texts[:2] == ["Hello Ann!", "Done."]  # the whole text, not one letter of it
    for name, expected in [("variants", "First Bob"), ("per_language_variants", "Hi!")]:
        chat.result = chat.engine.handle(asked, Action(name), chat.world)
        assert chat.texts[0] == expected
    russian = dataclasses.replace(asked, lang="ru")
    chat.result = chat.engine.handle(russian, Action("per_language"), chat.world)
    assert chat.texts[:2] == ["Привет, Ann!", "Готово."]
    chat.result = chat.engine.handle(russian, Action("english_only"), chat.world)
    assert chat.texts[0] == "Only English."  # as a flow's message: the flow's first language


@pytest.mark.parametrize("message, error", [
    (None, "say: expected a text or a non-empty list of texts, got NoneType"),
    (42, "say: expected a text or a non-empty list of texts, got int"),
    ([], "say: expected a text or a non-empty list of texts, got []"),
    (["a", 1], "say: expected a text or a non-empty list of texts, got ['a', 1]"),
    ({}, "say: expected a text, a list of texts or a mapping of language to those, got {}"),
    ({"en": 5}, "say: 'en': expected a text or a non-empty list of texts, got int"),
    ({"en": ()}, "say: 'en': expected a text or a non-empty list of texts, got ()"),
    ({"en": (1,)}, "say: 'en': expected a text or a non-empty list of texts, got (1,)"),
    ({"en": ("ok", None)}, "say: 'en': expected a text or a non-empty list of texts, got ('ok', None)"),
    ({5: "five"}, "say: a language is written as a text, like 'en', got int"),
])
def test_an_action_saying_what_is_no_message_fails_its_turn_saying_why(tmp_path, message, error):
    chat = _flow_with_actions(tmp_path, odd=lambda ctx: ctx.say(message))
    asked = chat.state
    with pytest.raises(TypeError) as raised:
        chat.press("odd")
    assert str(raised.value) == error
    assert chat.state == asked


def test_a_slot_an_action_writes_directly_that_storage_cannot_keep_fails_the_turn_naming_the_slot(tmp_path):
    # Without the check, `chatbot chat` kept the set while the server failed the turn's commit.
    def direct(ctx):
        ctx.slots["fine"] = [1, "two"]
        ctx.slots["tags"] = {"a", "b"}

    chat = _flow_with_actions(tmp_path, direct=direct, nested=lambda ctx: ctx.slots.update(cart={"items": [{1}]}))
    asked = chat.state
    with pytest.raises(TypeError, match=r"^slot 'tags': a set cannot be kept in a slot \(slots hold text"):
        chat.press("direct")
    with pytest.raises(TypeError, match=r"^slot 'cart': a dict cannot be kept in a slot"):
        chat.press("nested")
    assert chat.state == asked, "the failed turns changed nothing"


def test_an_action_calling_sys_exit_fails_its_turn_instead_of_ending_the_program(tmp_path):
    import sys

    chat = _flow_with_actions(tmp_path, leave=lambda ctx: sys.exit(3))
    with pytest.raises(RuntimeError, match=r"^action 'leave' raised SystemExit\(3\), which would end the program"):
        chat.press("leave")
