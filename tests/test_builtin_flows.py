"""What the built-in flows make of texts that look like an intent but are not one.

A guess must not end a login or cancel a registration: ordinary words near a keyword ('logo',
'вход'), and usernames holding a cancel word ('black', 'stop_watch', 'Назар'), go on as the
text they are. The matching rules themselves are tested in test_text.py.
"""

from __future__ import annotations

import pytest

from tests.engine_helpers import Conversation, MemoryWorld, make_engine

FALLBACK = "I did not get that. Try 'what can you do'."


class AccountRulesWorld(MemoryWorld):
    """Accepts the usernames the real accounts do (docs/accounts.md): 3 to 32 letters, digits,
    '_', '-' and '.', so that names such as 'back-end' and 'ann.back' can be registered."""

    def validate_username(self, username: str) -> str | None:
        fits = 3 <= len(username) <= 32 and all(char.isalnum() or char in "_-." for char in username)
        return None if fits else "bad_characters"


@pytest.fixture(scope="module")
def engine():
    return make_engine()


def logged_in(engine, lang: str = "en") -> Conversation:
    chat = Conversation(engine, lang=lang)
    chat.register()
    assert chat.where == "chat:listening" and chat.state.user == "ann"
    return chat


@pytest.mark.parametrize("text, lang", [
    ("logo", "en"),                    # 'logout' cut short
    ("can you make me a logo", "en"),
    ("вход", "ru"),                    # "entry": one letter from 'выход', "exit"
    ("что выходит?", "ru"),            # "what comes out?": 'выход' lengthened
])
def test_chat_logs_out_on_its_exact_words_only(engine, text, lang):
    chat = logged_in(engine, lang)
    chat.say(text)
    assert chat.state.user == "ann", chat.texts
    assert chat.where == "chat:listening"
    chat.say("log out" if lang == "en" else "выйти")
    assert chat.state.user is None
    assert chat.where == "hub:welcome"


def test_sign_me_up_starts_a_registration_not_a_login(engine):
    chat = Conversation(engine)
    chat.say("sign me up")  # 'sign' is 'signin' cut short, not a typo of it
    assert chat.where == "registration:ask_username"


@pytest.mark.parametrize("text, reply", [
    ("hi👋", "Hello, ann!"),
    ("hey👋", "Hello, ann!"),
    ("bye👋", "Bye! I will be here when you come back. Say 'log out' to end your login."),
    ("thx🙏", "You are welcome!"),
])
def test_an_emoji_glued_to_a_word_does_not_hide_it(engine, text, reply):
    chat = logged_in(engine)
    chat.say(text)
    assert chat.texts == [reply]


def test_questions_that_share_letters_with_an_example_are_not_taken_for_it(engine):
    chat = logged_in(engine)
    chat.say("who are you")  # 'who' for 'how': not "how are you"
    assert chat.texts == [FALLBACK]
    chat.say("what can you do for me")  # not "what do you call me"
    assert chat.texts[0].startswith("I can tell you who you are")


@pytest.mark.parametrize("name", [
    "black", "backup", "Cancer", "Назар", "stop_watch", "back-end", "ann.back",
])
def test_a_username_holding_a_cancel_word_registers_and_logs_in(engine, name):
    chat = Conversation(engine, AccountRulesWorld())
    chat.press("register")
    chat.say(name)
    assert chat.where == "registration:ask_password", chat.texts
    chat.say("password1")
    chat.say("password1")
    assert chat.where == "chat:listening"
    assert chat.state.user == name
    chat.press("logout")
    chat.press("login")
    chat.say(name)
    assert chat.where == "login:ask_password", chat.texts
    chat.say("password1")
    assert chat.where == "chat:listening"
    assert chat.state.user == name


def test_an_existing_account_named_like_a_cancel_word_can_log_in(engine):
    chat = Conversation(engine)
    chat.world.users["black"] = ("black", "password1")
    chat.press("login")
    chat.say("black")
    assert chat.where == "login:ask_password", chat.texts
    chat.say("password1")
    assert chat.state.user == "black"


@pytest.mark.parametrize("start, username, cancel", [
    ("login", "Назар", "Назад"),
    ("login", "stop_watch", "never mind"),
    ("register", "back-end", "Cancel!"),
    ("register", "Cancer", "стоп"),
])
def test_only_a_cancel_word_on_its_own_cancels_and_the_button_always_does(
        engine, start, username, cancel):
    flow = "login" if start == "login" else "registration"
    chat = Conversation(engine, AccountRulesWorld())
    chat.press(start)
    chat.say(username)
    assert chat.where == f"{flow}:ask_password", chat.texts
    chat.say(cancel)  # in a password input, any text is the password: never an intent
    assert chat.where != "hub:welcome"
    chat.press("cancel")
    assert chat.where == "hub:welcome"
    chat.press(start)
    chat.say(cancel)
    assert chat.where == "hub:welcome", chat.texts


@pytest.mark.parametrize("start, cancel", [
    ("register", "please cancel"), ("register", "go back"), ("register", "cancel registration"),
    ("login", "cancel login"), ("login", "stop please"), ("login", "отмена, пожалуйста"),
])
def test_the_usual_ways_of_saying_cancel_cancel(engine, start, cancel):
    chat = Conversation(engine)
    chat.press(start)
    chat.say(cancel)
    assert chat.where == "hub:welcome", chat.texts


@pytest.mark.parametrize("text, lang, reply", [
    ("goodby", "en", "Bye! I will be here when you come back. Say 'log out' to end your login."),
    ("good mornin", "en", "Hello, ann!"),
    ("thank", "en", "You are welcome!"),
    ("приветик", "ru", "Привет, ann!"),
    ("спасибки", "ru", "Пожалуйста!"),
])
def test_a_missing_last_letter_and_the_listed_word_forms_are_understood(engine, text, lang, reply):
    chat = logged_in(engine, lang)
    chat.say(text)
    assert chat.texts == [reply]


@pytest.mark.parametrize("text, lang, intent", [
    ("how are u", "en", "how_are_you"), ("how r u", "en", "how_are_you"),
    ("анекдоты", "ru", "joke"), ("пошутить", "ru", "joke"),
])
def test_listed_word_forms_reach_their_intent(engine, text, lang, intent):
    chat = logged_in(engine, lang)
    chat.say(text)
    assert [step.get("intent") for step in chat.result.transitions] == [intent], chat.texts


def test_a_new_account_can_be_asked_for_in_words(engine):
    chat = Conversation(engine)
    chat.say("create an account")
    assert chat.where == "registration:ask_username"


@pytest.mark.parametrize("text, lang", [
    ("i don't want to log out", "en"), ("how do i log out", "en"), ("what does log out do", "en"),
    ("bye, log out", "en"), ("не хочу выйти", "ru"), ("как выйти?", "ru"),
])
def test_a_question_or_a_refusal_about_logging_out_keeps_the_login(engine, text, lang):
    chat = logged_in(engine, lang)
    chat.say(text)
    assert chat.state.user == "ann", chat.texts


@pytest.mark.parametrize("text, lang", [
    ("log me out", "en"), ("Log out, please", "en"), ("sign me out", "en"), ("log off", "en"),
    ("выйди", "ru"), ("Выйти из системы", "ru"), ("разлогинь меня", "ru"),
])
def test_a_request_to_log_out_in_its_usual_words_logs_out(engine, text, lang):
    chat = logged_in(engine, lang)
    chat.say(text)
    assert chat.state.user is None and chat.where == "hub:welcome", chat.texts


@pytest.mark.parametrize("text, lang, intent", [
    ("what can u do", "en", "capabilities"), ("что вы умеете", "ru", "capabilities"),
    ("помогите", "ru", "capabilities"), ("кто я такой", "ru", "whoami"), ("как у тебя дела", "ru", "how_are_you"),
    ("what's the time?", "en", "time"), ("time please", "en", "time"),
])
def test_the_phrasings_the_help_invites_reach_their_intent(engine, text, lang, intent):
    chat = logged_in(engine, lang)
    chat.say(text)
    assert [step.get("intent") for step in chat.result.transitions] == [intent], chat.texts


@pytest.mark.parametrize("text, lang, intent", [
    ("создать аккаунт", "ru", "register"), ("создать учётную запись", "ru", "register"),
    ("make an account", "en", "register"), ("new user", "en", "register"),
    ("доброе утро", "ru", "greet"), ("Good afternoon", "en", "greet"),
])
def test_a_visitor_is_understood_in_the_bots_own_words(engine, text, lang, intent):
    chat = Conversation(engine, lang=lang)
    chat.say(text)
    assert [step.get("intent") for step in chat.result.transitions][:1] == [intent], chat.texts


@pytest.mark.parametrize("start, cancel", [("register", "отмените"), ("register", "пожалуйста, отмена"),
                                           ("login", "nevermind")])
def test_polite_and_joined_up_cancels_cancel(engine, start, cancel):
    chat = Conversation(engine, lang="ru" if cancel[0] in "оп" else "en")
    chat.press(start)
    chat.say(cancel)
    assert chat.where == "hub:welcome", chat.texts
