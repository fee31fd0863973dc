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
    ("do not log me out", "en"), ("can i log out", "en"), ("log out? no", "en"),
    ("не хочу выйти", "ru"), ("как выйти?", "ru"), ("я не хочу выйти", "ru"), ("можно выйти?", "ru"),
])
def test_a_question_or_a_refusal_about_logging_out_keeps_the_login(engine, text, lang):
    chat = logged_in(engine, lang)
    chat.say(text)
    assert chat.state.user == "ann", chat.texts


@pytest.mark.parametrize("text, lang", [
    ("log me out", "en"), ("Log out, please", "en"), ("sign me out", "en"), ("log off", "en"),
    ("выйди", "ru"), ("Выйти из системы", "ru"), ("разлогинь меня", "ru"),
    ("bye, log out", "en"), ("I'd like to log out", "en"), ("can you log me out", "en"), ("i wanna log out", "en"),
    ("let me log out", "en"), ("log out now please", "en"), ("ok log out", "en"),
    ("я хочу выйти", "ru"), ("выйти сейчас", "ru"), ("выйти из чата", "ru"), ("пока, выйти", "ru"),
])
def test_a_request_to_log_out_in_its_usual_words_logs_out(engine, text, lang):
    chat = logged_in(engine, lang)
    chat.say(text)
    assert chat.state.user is None and chat.where == "hub:welcome", chat.texts


@pytest.mark.parametrize("text, lang, intent", [
    ("what can u do", "en", "capabilities"), ("что вы умеете", "ru", "capabilities"),
    ("помогите", "ru", "capabilities"), ("кто я такой", "ru", "whoami"), ("как у тебя дела", "ru", "how_are_you"),
    ("what's the time?", "en", "time"), ("time please", "en", "time"),
    # a greeting or thanks around a request answers the request
    ("hi! call me Bob", "en", "call_me"), ("hello, what can you do?", "en", "capabilities"),
    ("hey, what time is it?", "en", "time"), ("thanks! tell me a joke", "en", "joke"),
    ("tell me a joke, thanks", "en", "joke"), ("good morning, who am I?", "en", "whoami"),
    ("what time is it? thank you", "en", "time"), ("hello how are you", "en", "how_are_you"),
    ("привет, зови меня Боб", "ru", "call_me"), ("привет! что ты умеешь?", "ru", "capabilities"),
    ("спасибо, расскажи шутку", "ru", "joke"), ("привет, как дела?", "ru", "how_are_you"),
    ("здравствуйте! который час?", "ru", "time"), ("как меня зовут? спасибо", "ru", "remind_name"),
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


HUB_FALLBACK = {"en": "To chat with me, please log in or register first.",
                "ru": "Чтобы поговорить, сначала войдите или зарегистрируйтесь."}


@pytest.mark.parametrize("lang", ["ru", "en"])
@pytest.mark.parametrize("text", ["выйти", "выход", "Выход!", "хочу выйти"])
def test_exit_is_not_read_as_entry_by_a_visitor(engine, text, lang):
    chat = Conversation(engine, lang=lang)
    chat.say(text)  # 'выйти'/'выход' ("exit") are one letter from 'войти'/'вход' ("log in")
    assert chat.where == "hub:welcome", chat.texts
    assert chat.texts == [HUB_FALLBACK[lang]]


@pytest.mark.parametrize("text, lang, flow", [
    ("войти", "ru", "login"), ("вход", "ru", "login"), ("хочу войти", "ru", "login"), ("логин", "en", "login"),
    ("Как войти?", "ru", "login"), ("lgoin", "en", "login"), ("i do have an account", "en", "login"),
    ("I have no account", "en", "registration"), ("у меня еще нет аккаунта", "ru", "registration"),
    ("unregister", "en", "hub"), ("deregister", "en", "hub"),    # letters added in front: another word
])
def test_a_visitor_asking_to_log_in_or_register_gets_the_right_flow(engine, text, lang, flow):
    chat = Conversation(engine, lang=lang)
    chat.say(text)
    assert chat.state.flow == flow, chat.texts


@pytest.mark.parametrize("text, lang, reply", [
    ("hi", "en", "Hello, ann!"), ("Hello there!", "en", "Hello, ann!"), ("hey hey", "en", "Hello, ann!"),
    ("Good evening", "en", "Hello, ann!"), ("helloo 👋", "en", "Hello, ann!"), ("👋👋", "en", "Hello, ann!"),
    ("Thanks!", "en", "You are welcome!"), ("thank you very much", "en", "You are welcome!"),
    ("ok, thanks a lot", "en", "You are welcome!"), ("🙏", "en", "You are welcome!"),
    ("Привет!", "ru", "Привет, ann!"), ("Здравствуйте", "ru", "Привет, ann!"), ("добрый вечер", "ru", "Привет, ann!"),
    ("Спасибо большое!", "ru", "Пожалуйста!"), ("большое спасибо", "ru", "Пожалуйста!"),
])
def test_a_greeting_or_thanks_on_its_own_is_answered_as_one(engine, text, lang, reply):
    chat = logged_in(engine, lang)
    chat.say(text)
    assert chat.texts == [reply]


@pytest.mark.parametrize("text, lang, nickname", [
    ("call me Bob, please", "en", "Bob"), ("call me Ann please", "en", "Ann"), ("call me Ann Marie", "en", "Ann Marie"),
    ("Please call me Bob, thanks!", "en", "Bob"), ("зови меня Боб, пожалуйста", "ru", "Боб"),
    ("Меня зовут Анна Мария", "ru", "Анна Мария"),
])
def test_a_please_or_thanks_after_the_name_is_not_part_of_it(engine, text, lang, nickname):
    chat = logged_in(engine, lang)
    chat.say(text)
    assert chat.state.slots.get("nickname") == nickname, chat.texts


@pytest.mark.parametrize("text, lang, nickname", [
    ("call me Ann (the great)", "en", "Ann (the great)"), ("call me Ann (the great), please", "en", "Ann (the great)"),
    ("зови меня Аня «Великая»!", "ru", "Аня «Великая»"), ("call me [Ann]", "en", "Ann"),
])
def test_a_nickname_keeps_the_brackets_it_opens_and_closes(engine, text, lang, nickname):
    chat = logged_in(engine, lang)
    chat.say(text)
    assert chat.state.slots.get("nickname") == nickname, chat.texts


@pytest.mark.parametrize("text, lang", [
    ("time", "en"), ("the time", "en"), ("Tell time", "en"), ("time now?", "en"), ("tell me the time please", "en"),
    ("время", "ru"), ("скажи время", "ru"), ("Который сейчас час?", "ru"), ("сколько сейчас времени", "ru"),
])
def test_the_time_can_be_asked_for_in_the_short_ways(engine, text, lang):
    chat = logged_in(engine, lang)
    chat.say(text)
    assert [step.get("intent") for step in chat.result.transitions] == ["time"], chat.texts
    assert chat.texts == [{"en": "It is 14:13 UTC on 2026-09-21.", "ru": "Сейчас 14:13 UTC, 2026-09-21."}[lang]]


@pytest.mark.parametrize("lang, forget, nothing, done", [
    ("en", "forget my name",
     "You have not told me what to call you, so there is nothing to forget: I call you ann.",
     "Done, I will call you ann again."),
    ("ru", "забудь мое имя",
     "Вы не говорили, как вас называть, так что забывать нечего: я называю вас ann.",
     "Хорошо, снова буду называть вас ann."),
])
def test_forgetting_a_name_never_set_says_so(engine, lang, forget, nothing, done):
    chat = logged_in(engine, lang)
    chat.say(forget)
    assert chat.texts == [nothing]
    chat.say("call me Bob" if lang == "en" else "зови меня Боб")
    chat.say(forget)
    assert chat.texts == [done]
    assert "nickname" not in chat.state.slots


@pytest.mark.parametrize("text, lang, reply", [
    ("my name is", "en", "What shall I call you? Say 'call me' and the name, for example 'call me Ann'."),
    ("Call me!", "en", "What shall I call you? Say 'call me' and the name, for example 'call me Ann'."),
    ("меня зовут", "ru", "Как вас называть? Скажите «зови меня» и имя, например «зови меня Аня»."),
])
def test_the_start_of_a_name_without_the_name_asks_for_it(engine, text, lang, reply):
    chat = logged_in(engine, lang)
    chat.say(text)
    assert chat.texts == [reply]
    assert "nickname" not in chat.state.slots
    chat.say(f"{text} Bob")
    assert chat.state.slots.get("nickname") == "Bob", chat.texts


@pytest.mark.parametrize("text, lang", [
    ("what can you do?", "en"), ("who are you", "en"), ("help", "en"), ("How does this work?", "en"),
    ("что вы умеете?", "ru"), ("кто ты", "ru"), ("помогите", "ru"),
])
def test_a_visitor_asking_what_the_bot_is_gets_the_help_and_the_question_again(engine, text, lang):
    chat = Conversation(engine, lang=lang)
    chat.say(text)
    help_text, question = chat.texts
    assert help_text.startswith("I am a chat bot." if lang == "en" else "Я чат-бот.")
    assert any(word in question.lower() for word in ("log in", "войти", "войдите")), question
    assert chat.where == "hub:welcome"
    chat.say("log in" if lang == "en" else "войти")  # the question stands
    assert chat.where == "login:ask_username"


@pytest.mark.parametrize("text, lang, where", [
    ("help, I don't have an account", "en", "registration:ask_username"),
    ("help me, I already have an account", "en", "login:ask_username"),
    ("помогите, у меня нет аккаунта", "ru", "registration:ask_username"),
    ("у меня есть аккаунт, помоги", "ru", "login:ask_username"),
])
def test_a_plea_for_help_with_a_login_or_registration_in_it_is_that(engine, text, lang, where):
    chat = Conversation(engine, lang=lang)
    chat.say(text)
    assert chat.where == where, chat.texts
