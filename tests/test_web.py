"""The bundled chat page in Debian's Chromium against a real `chatbot serve` process.

One browser per module; each test has its own browser context (its own storage, like a fresh
profile), its own server process and data folder.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Callable

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from tests.browser_helpers import (BLOCK_STORAGE, CHROMIUM, SOCKETS, ChatPage, exactly,
                                   fill_conversation, launch_chromium, server_history)
from tests.process_helpers import ServerProcess, TcpProxy

expect.set_options(timeout=10_000)  # a shared 2-core machine can be slow; the waits end as soon as they can
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium is not installed at {CHROMIUM} "
                                "(`apt-get install chromium`; .ci/run does it)")

WELCOME_EN = re.compile(r"^(Hello! I am your chat bot\. Do you want to log in or register\?"
                        r"|Hi there! Log in or create an account to start chatting\.)$")
WELCOME_RU = re.compile(r"^(Здравствуйте! Я ваш чат-бот\. Хотите войти или зарегистрироваться\?"
                        r"|Привет! Войдите или создайте учётную запись, чтобы начать разговор\.)$")
ASK_NEW_USERNAME = "Choose a username: 3 to 32 letters, digits, '_', '-' or '.'."
ASK_NEW_PASSWORD = "Choose a password: 8 to 128 characters, any you like (but not your username)."
ASK_CONFIRM = "Type the same password again to confirm it."
MASK = "••••••"
XSS = "<img src=x onerror=alert(1)>"
# What Chromium logs for each reconnection attempt while the server is down: expected, nothing else is.
# An attempt made as the server dies can reach its listening socket before the kernel closes it,
# and is then reset in the handshake instead of refused.
REFUSED_WHILE_DOWN = re.compile(r"^WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws' failed: "
                                r"(Error in connection establishment: net::ERR_CONNECTION_REFUSED"
                                r"|Error during WebSocket handshake: net::ERR_CONNECTION_RESET)$")
# What it logs for each attempt while a tab is offline, and for an attempt the page gives up.
FAILED_OFFLINE = re.compile(r"^WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws' failed: "
                            r"Error in connection establishment: net::ERR_INTERNET_DISCONNECTED$")
GIVEN_UP = re.compile(r"^WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws' failed: "
                      r"WebSocket is closed before the connection is established\.$")
EXPIRED = "Your previous conversation has expired. A new one has started."
# Where to write a fresh screenshot of a conversation for the README (e.g. docs/screenshot.png).
SCREENSHOT_TO = os.environ.get("CHATBOT_SCREENSHOT")


def listening(user: str) -> str:
    return f"What shall we talk about, {user}? Ask me what I can do."


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def server(request, tmp_path):
    """`chatbot serve`; a test parametrizes it indirectly to give the command more arguments."""
    process = ServerProcess(tmp_path / "data", *getattr(request, "param", ()))
    process.start()
    yield process
    if process.proc.poll() is None:
        process.terminate()


@pytest.fixture
def open_chat(browser, server):
    """Open the chat page in a new browser context; the page must not throw or pop up dialogs.

    `context`: open it as another tab of that context (its profile: the tabs share the session);
    `port`: load it from there (a proxy) instead of the server; `setup`: prepares the tab before
    the page loads; `console`: what else the browser may log for this tab.
    """
    contexts, pages = [], []

    def open_(locale: str = "en-US", width: int = 900, height: int = 760, *,
              context: BrowserContext | None = None, port: int | None = None,
              setup: Callable[[Page], None] | None = None, console: tuple[re.Pattern, ...] = ()) -> ChatPage:
        if context is None:
            context = browser.new_context(locale=locale, viewport={"width": width, "height": height})
            context.set_default_timeout(10_000)
            contexts.append(context)
        page = context.new_page()
        if setup:
            setup(page)
        chat = ChatPage(page, f"http://127.0.0.1:{port or server.port}/")
        pages.append((chat, (REFUSED_WHILE_DOWN, *console)))
        return chat.open()

    yield open_
    for context in contexts:
        context.close()
    for chat, expected in pages:
        assert chat.errors == [], f"the page threw: {chat.errors}"
        assert chat.dialogs == [], f"the page opened dialogs: {chat.dialogs}"
        complaints = [text for text in chat.console if not any(known.search(text) for known in expected)]
        assert complaints == [], f"the browser's console: {complaints}"


def register(chat: ChatPage, user: str, password: str) -> None:
    chat.click_and_expect(chat.register_button, ASK_NEW_USERNAME)
    chat.exchange(user, ASK_NEW_PASSWORD)
    expect(chat.input).to_have_attribute("type", "password")
    chat.exchange(password, ASK_CONFIRM)
    expect(chat.input).to_have_attribute("type", "password")
    chat.exchange(password, f"Your account is ready, {user}. You are logged in.", listening(user))
    expect(chat.input).to_have_attribute("type", "text")


# --- 1. accounts -------------------------------------------------------------------------------
def test_register_logout_login_chat_logout(open_chat):
    chat = open_chat()
    expect(chat.bot_texts.first).to_have_text(WELCOME_EN)
    chat.expect_anonymous()

    register(chat, "ann_web", "correct horse 42")
    chat.expect_logged_in("ann_web")

    chat.log_out("You are logged out. Bye!", WELCOME_EN)
    chat.expect_anonymous()

    chat.click_and_expect(chat.login_button, "What is your username?")
    chat.exchange("ann_web", "Your password, please.")
    chat.exchange("correct horse 42", "Welcome back, ann_web!", listening("ann_web"))
    chat.expect_logged_in("ann_web")

    chat.exchange(None, "You are logged in as ann_web.", press="Who am I?")
    chat.exchange("call me Annie", "Nice to meet you, Annie! I will remember that.")
    chat.exchange("what is my name", "You asked me to call you Annie.")
    assert chat.layout_problems() == []
    if SCREENSHOT_TO:
        chat.input.blur()
        chat.page.screenshot(path=SCREENSHOT_TO, animations="disabled")

    users = [entry["text"] for entry in chat.entries() if entry["from"] == "user"]
    assert users == ["ann_web", MASK, "call me Annie", "what is my name"], "the first logout cleared the page"
    chat.log_out("You are logged out. Bye!", WELCOME_EN)
    chat.expect_anonymous()
    chat.reload()  # the next person at this screen: the server forgot the conversation too
    goodbye, welcome = [entry["text"] for entry in chat.entries()]
    assert goodbye == "You are logged out. Bye!" and WELCOME_EN.fullmatch(welcome)


# --- 2. reload ---------------------------------------------------------------------------------
def test_reload_restores_history_and_dialog_state(open_chat):
    chat = open_chat()
    chat.click_and_expect(chat.register_button, ASK_NEW_USERNAME)
    chat.exchange("bo_reload", ASK_NEW_PASSWORD)
    chat.exchange("a long passphrase", ASK_CONFIRM)

    # Mid-registration: the server still holds the first password; the field is a password field.
    before = chat.entries()
    chat.reload()
    expect(chat.bot_texts).to_have_count(sum(1 for e in before if e["from"] == "bot"))
    assert chat.entries() == before
    expect(chat.input).to_have_attribute("type", "password")
    chat.exchange("a long passphrase", "Your account is ready, bo_reload. You are logged in.",
                  listening("bo_reload"))

    chat.exchange("call me Bo", "Nice to meet you, Bo! I will remember that.")
    before = chat.entries()
    assert [e["buttons"] for e in before if e["buttons"]][-1] == \
        ["What can you do? (off)", "Who am I? (off)", "Tell me a joke (off)"]
    chat.reload()
    expect(chat.bot_texts).to_have_count(sum(1 for e in before if e["from"] == "bot"))
    assert chat.entries() == before
    chat.expect_logged_in("bo_reload")
    chat.exchange("what is my name", "You asked me to call you Bo.")
    texts = [e["text"] for e in chat.entries()]
    assert texts[-2:] == ["what is my name", "You asked me to call you Bo."]
    assert len(texts) == len(before) + 2


# Lets a test lose the page's `history` requests and drop its socket, as a bad network would.
FLAKY_NETWORK = """
window.__sockets = [];
window.__loseHistory = false;
const Original = window.WebSocket;
window.WebSocket = class extends Original {
  constructor(...args) { super(...args); window.__sockets.push(this); }
  send(data) { if (!(window.__loseHistory && data.includes('"type":"history"'))) super.send(data); }
};
"""


def test_show_earlier_messages_can_be_asked_again_after_a_drop_lost_its_answer(open_chat):
    chat = open_chat()
    for n in range(52):  # more entries than a reloaded page is given at first (100)
        before = chat.bot_texts.count()
        chat.type_message(f"message {n}")
        expect(chat.bot_texts).to_have_count(before + 1)
    chat.page.add_init_script(FLAKY_NETWORK)
    chat.reload()
    earlier = chat.page.locator("#earlier")
    expect(earlier).to_be_visible()
    shown = len(chat.entries())
    chat.page.evaluate("() => { window.__loseHistory = true; }")
    earlier.click()
    expect(earlier).to_be_disabled()
    chat.page.evaluate("() => { window.__loseHistory = false; window.__sockets.at(-1).close(); }")
    expect(earlier).to_be_enabled()
    chat.expect_connected()
    earlier.click()
    chat.page.wait_for_function("n => document.querySelectorAll('.msg').length > n", arg=shown)
    assert len(chat.entries()) > shown


def test_a_message_over_the_servers_frame_limit_is_not_sent_again_and_again(browser, tmp_path):
    small = ServerProcess(tmp_path / "data", "--max-frame-bytes", "1024")
    small.start()
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        page.add_init_script(FLAKY_NETWORK)
        chat = ChatPage(page, f"http://127.0.0.1:{small.port}/").open()
        chat.type_message("x" * 2000)  # the server closes the connection with 1009
        expect(page.locator(".msg.failed .msg-status")).to_have_text("not sent: too long for this server")
        chat.expect_connected()
        before = chat.bot_texts.count()
        chat.type_message("hi")
        expect(chat.bot_texts).to_have_count(before + 1)
        assert page.evaluate("window.__sockets.length") == 2, "one reconnect, not a loop"
        assert chat.session_storage().get("chatbot.outbox") is None
        assert chat.errors == []
    finally:
        context.close()
        small.terminate()


# --- 3. server restart -------------------------------------------------------------------------
def test_a_browser_without_check_visibility_reconnects_with_a_button_focused(open_chat, server):
    # Safari before 17.4 has no Element.checkVisibility.
    chat = open_chat(setup=lambda page: page.add_init_script("delete Element.prototype.checkVisibility;"))
    chat.expect_connected()
    chat.page.locator("[data-lang='en']").focus()
    server.terminate()
    expect(chat.status).to_have_attribute("data-state", re.compile("^(reconnecting|offline)$"))
    server.start()
    chat.expect_connected(timeout=20_000)
    assert chat.errors == []


@pytest.mark.parametrize("stop", ["terminate", "kill"])
def test_server_restart_mid_dialog_delivers_the_waiting_message_once(open_chat, server, stop):
    chat = open_chat()
    register(chat, "cy_restart", "restart-proof pass")
    chat.exchange(None, "You are logged in as cy_restart.", press="Who am I?")
    expect(chat.status).to_have_text("Connected")

    shown_before = len(chat.statuses())
    getattr(server, stop)()
    expect(chat.status).to_have_attribute("data-state", re.compile("^(reconnecting|offline)$"))
    chat.type_message("call me Cyrus")
    waiting = chat.page.locator(".msg.pending")
    expect(waiting).to_have_count(1)
    expect(waiting.locator(".msg-text")).to_have_text("call me Cyrus")
    expect(waiting.locator(".msg-status")).to_have_text("sending…")
    assert "Cyrus" in chat.session_storage()["chatbot.outbox"]

    server.start()
    chat.expect_connected(timeout=20_000)
    expect(chat.status).to_have_text("Connected")
    shown = chat.statuses()[shown_before:]
    assert shown[0] == "reconnecting:Reconnecting…" and shown[-1] == "connected:Connected", shown

    nice = "Nice to meet you, Cyrus! I will remember that."
    expect(chat.bot_texts.last).to_have_text(nice)
    expect(chat.pending).to_have_count(0)
    # The dialog goes on where it was; by the time its reply is in, a duplicate would have come too.
    chat.exchange("what is my name", "You asked me to call you Cyrus.")
    expect(chat.user_texts.filter(has_text=exactly("call me Cyrus"))).to_have_count(1)
    expect(chat.bot_texts.filter(has_text=exactly(nice))).to_have_count(1)
    assert "chatbot.outbox" not in chat.session_storage()

    stored = server_history(server.port, chat.local_storage()["chatbot.resume"])
    assert [e["text"] for e in stored].count("call me Cyrus") == 1
    assert [e["text"] for e in stored].count(nice) == 1
    assert [(e["from"], e["text"]) for e in stored] == [(e["from"], e["text"]) for e in chat.entries()]


# How many connections the page had opened when it first said "Offline" (observers run before
# the timer of the next attempt can).
SOCKETS_WHEN_OFFLINE = SOCKETS + """
new MutationObserver(() => {
  const status = document.getElementById('status');
  if (status?.dataset.state === 'offline') window.__socketsWhenOffline ??= window.__sockets.length;
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-state']});
"""


def test_offline_shows_after_four_failed_attempts_not_counting_the_connection_that_closed(open_chat, server):
    chat = open_chat(setup=lambda page: page.add_init_script(SOCKETS_WHEN_OFFLINE))
    server.kill()
    expect(chat.status).to_have_attribute("data-state", "offline")
    # The page's connection, which worked until it closed, then four attempts refused.
    assert chat.page.evaluate("window.__socketsWhenOffline") == 5
    assert chat.statuses()[-3:] == ["connected:Connected", "reconnecting:Reconnecting…", "offline:Offline"]


# --- 4. passwords ------------------------------------------------------------------------------
SENT_FRAMES = """
window.__sent = [];
const Original = window.WebSocket;
window.WebSocket = class extends Original {
  send(data) { window.__sent.push(JSON.parse(data)); super.send(data); }
};
"""


def test_what_is_typed_into_the_password_box_and_only_that_is_sent_marked_secret(open_chat):
    chat = open_chat(setup=lambda page: page.add_init_script(SENT_FRAMES))
    register(chat, "sam_web", "correct horse 42")
    chat.exchange("who am i", "You are logged in as sam_web.")
    sent = [frame for frame in chat.page.evaluate("window.__sent") if frame["type"] == "message"]
    assert [(frame["text"], frame.get("secret")) for frame in sent] == [
        ("sam_web", None), ("correct horse 42", True), ("correct horse 42", True), ("who am i", None)]


def send_password(chat: ChatPage, password: str, *replies: str) -> None:
    expect(chat.input).to_have_attribute("type", "password")
    before = chat.bot_texts.count()
    chat.input.fill(password)
    chat.input.press("Enter")
    expect(chat.input).to_have_value("")  # cleared as it is sent, before any reply
    expect(chat.user_texts.last).to_have_text(MASK)
    for offset, reply in enumerate(replies):
        expect(chat.bot_texts.nth(before + offset)).to_have_text(exactly(reply))
    expect(chat.pending).to_have_count(0)


def test_passwords_are_nowhere_in_the_page_or_its_storage(open_chat):
    chat = open_chat()
    received: list[str] = []
    sent: list[str] = []
    chat.page.on("websocket", lambda ws: (ws.on("framereceived", lambda frame: received.append(frame)),
                                          ws.on("framesent", lambda frame: sent.append(frame))))
    chat.reload()  # so the recorder sees the page's connection from its start
    right, wrong = "Zebra-Quartz-1977", "Wrong-Guess-4242"

    register(chat, "dee_pw", right)
    chat.log_out("You are logged out. Bye!", WELCOME_EN)
    chat.click_and_expect(chat.login_button, "What is your username?")
    chat.exchange("dee_pw", "Your password, please.")
    send_password(chat, wrong, "Wrong username or password. Let us try again.", "What is your username?")
    chat.exchange("dee_pw", "Your password, please.")
    send_password(chat, right, "Welcome back, dee_pw!", listening("dee_pw"))
    chat.expect_logged_in("dee_pw")

    seen = {
        "text": chat.page.evaluate("document.body.innerText"),
        "html": chat.page.content(),
        "inputs": json.dumps(chat.page.evaluate("[...document.querySelectorAll('input')].map(i => i.value)")),
        "localStorage": json.dumps(chat.local_storage()),
        "sessionStorage": json.dumps(chat.page.evaluate("() => ({...sessionStorage})")),
        "storage writes": "\n".join(chat.storage_writes()),
        "frames from the server": "\n".join(received),
    }
    assert any(write.startswith("chatbot.outbox=") for write in chat.storage_writes())  # it records
    for secret in (right, wrong):
        for where, content in seen.items():
            assert secret not in content, f"a password shows in the {where}"
    assert seen["text"].count(MASK) == 2  # the login's two: the logout cleared the registration's
    # Each password typed went out in exactly one frame: never queued, never resent.
    assert sum(right in frame for frame in sent) == 3
    assert sum(wrong in frame for frame in sent) == 1


# --- 5. markup in messages ---------------------------------------------------------------------
def test_markup_in_a_message_is_shown_as_text_and_runs_nothing(open_chat):
    chat = open_chat()
    chat.exchange(XSS, "To chat with me, please log in or register first.")
    expect(chat.user_texts.last).to_have_text(XSS)
    register(chat, "eve_xss", "no scripts please")
    chat.exchange(f"call me {XSS}", f"Nice to meet you, {XSS}! I will remember that.")
    chat.reload()  # the history path renders the same entries again
    expect(chat.bot_texts.last).to_have_text(f"Nice to meet you, {XSS}! I will remember that.")
    expect(chat.user_texts.filter(has_text=exactly(XSS))).to_have_count(1)
    assert chat.page.locator("img").count() == 0
    assert chat.page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    assert chat.dialogs == []


# --- 6. Russian --------------------------------------------------------------------------------
def test_russian_ui_and_conversation(open_chat):
    chat = open_chat(locale="ru-RU")
    page = chat.page
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    expect(page).to_have_title("Чат")
    expect(chat.status).to_have_text("Подключено")
    expect(chat.login_button).to_have_text("Войти")
    expect(chat.register_button).to_have_text("Зарегистрироваться")
    expect(page.get_by_test_id("send-button")).to_have_text("Отправить")
    expect(page.get_by_label("Сообщение")).to_be_visible()
    expect(chat.input).to_have_attribute("placeholder", "Введите сообщение")
    expect(chat.bot_texts.first).to_have_text(WELCOME_RU)

    chat.exchange(None, "Выберите имя пользователя: от 3 до 32 букв, цифр, «_», «-» или «.».",
                  press="Регистрация")
    chat.exchange("Борис", "Придумайте пароль: от 8 до 128 любых символов (но не имя пользователя).")
    expect(chat.input).to_have_attribute("placeholder", "Пароль (скрыт)")
    expect(page.get_by_test_id("input-hint")).to_have_text(
        "То, что вы вводите здесь, скрыто и не показывается в чате.")
    chat.exchange("секретный пароль", "Введите тот же пароль ещё раз для подтверждения.")
    chat.exchange("секретный пароль", "Учётная запись готова, Борис. Вы вошли в систему.",
                  "О чём поговорим, Борис? Спросите, что я умею.")
    expect(chat.user_name).to_have_text("Борис")
    expect(page.locator("#user-box")).to_have_text(re.compile(r"^\s*Вы вошли как\s+Борис\s*$"))
    expect(chat.logout_button).to_have_text("Выйти")

    chat.exchange(None, "Вы вошли как Борис.", press="Кто я?")
    chat.exchange("зови меня Боря", "Приятно познакомиться, Боря! Я запомню.")
    chat.exchange("как меня зовут", "Вы просили называть вас Боря.")
    chat.log_out("Вы вышли из системы. До встречи!", WELCOME_RU)
    expect(chat.register_button).to_be_visible()


# --- layout and keyboard -----------------------------------------------------------------------
@pytest.mark.parametrize("locale", ["en-US", "ru-RU"])
def test_a_360px_wide_screen_fits(open_chat, locale):
    chat = open_chat(locale=locale, width=360, height=740)

    def assert_fits(stage: str) -> None:
        assert chat.layout_problems() == [], stage

    assert_fits("anonymous")
    chat.click_and_expect(chat.register_button, re.compile("."))
    long_name = "w" * 32
    chat.exchange(long_name, re.compile("."))
    assert_fits("password prompt with its hint")
    chat.exchange("narrow screen pass", re.compile("."))
    chat.exchange("narrow screen pass", re.compile(long_name), re.compile(long_name))
    chat.expect_logged_in(long_name)
    chat.exchange("call me " + "Вероника" * 20, re.compile("Вероника"))
    chat.exchange("https://example.com/" + "a/b/c?d=e&" * 20, re.compile("."))
    assert_fits("logged in, long words")
    send = chat.page.get_by_test_id("send-button").bounding_box()
    assert send["x"] + send["width"] <= 360


def test_the_message_field_follows_the_direction_of_its_text(open_chat):
    chat = open_chat()
    direction = "input => getComputedStyle(input).direction"
    chat.input.fill("שלום, מה שלומך?")
    assert chat.input.evaluate(direction) == "rtl"
    chat.input.fill("hello, שלום")
    assert chat.input.evaluate(direction) == "ltr"


# Where a message is in the conversation's view, from its top, once the page has drawn.
OFFSET_IN_LOG = """
text => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => {
  const log = document.getElementById('log');
  done(text.closest('.msg').getBoundingClientRect().top - log.getBoundingClientRect().top);
})))
"""


@pytest.mark.parametrize("server", [("--rate-limit", "1000", "--rate-burst", "1000")], indirect=True)
def test_a_reader_who_scrolled_up_keeps_the_message_read_in_view_when_the_screen_turns(open_chat, server):
    chat = open_chat(width=1200, height=800)
    fill_conversation(server.port, chat.local_storage()["chatbot.resume"], 60)
    expect(chat.user_texts.last).to_have_text("message 59")
    reading = chat.user_texts.filter(has_text=exactly("message 30"))
    reading.evaluate("text => { const log = document.getElementById('log');"  # the top-most one in view
                     " log.scrollTop += text.closest('.msg').getBoundingClientRect().top"
                     " - log.getBoundingClientRect().top - 4; }")
    offset = reading.evaluate(OFFSET_IN_LOG)
    for width, height in ((360, 640), (640, 360), (1200, 800)):
        chat.page.set_viewport_size({"width": width, "height": height})
        assert abs(reading.evaluate(OFFSET_IN_LOG) - offset) < 2, f"moved at {width}x{height}"


def test_keyboard_only_use(open_chat):
    chat = open_chat()
    page = chat.page
    expect(chat.bot_texts.first).to_have_text(WELCOME_EN)
    focused = []
    for _ in range(15):
        page.keyboard.press("Tab")
        ring = page.evaluate("""() => {
          const el = document.activeElement, style = getComputedStyle(el);
          return {id: el.id || el.textContent, visible: el.matches(':focus-visible'),
                  outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2};
        }""")
        focused.append(ring["id"])
        assert ring["visible"] and ring["outline"], f"no visible focus on {ring['id']}"
        if ring["id"] == "input":
            break
    assert focused[-1] == "input", f"Tab never reached the message field: {focused}"
    assert {"login", "register", "log"} <= set(focused)

    before = chat.bot_texts.count()
    page.keyboard.type("hello")
    page.keyboard.press("Enter")
    expect(chat.user_texts.last).to_have_text("hello")
    expect(chat.bot_texts.nth(before)).to_have_text(WELCOME_EN)
    expect(chat.pending).to_have_count(0)
    expect(chat.input).to_be_focused()
    expect(chat.input).to_have_value("")

    # Back to the latest reply's quick replies, and press one with the keyboard.
    page.keyboard.press("Shift+Tab")
    expect(chat.quick_reply("Register")).to_be_focused()
    page.keyboard.press("Enter")
    expect(chat.bot_texts.last).to_have_text(ASK_NEW_USERNAME)
    expect(chat.input).to_be_focused()


def test_two_tabs_of_a_session_each_deliver_their_own_waiting_message_after_a_restart(browser, server):
    context = browser.new_context(locale="en-US")  # one profile: the tabs share the session
    try:
        url = f"http://127.0.0.1:{server.port}/"
        first = ChatPage(context.new_page(), url).open()
        second = ChatPage(context.new_page(), url).open()
        server.terminate()
        for chat in (first, second):
            expect(chat.status).to_have_attribute("data-state", re.compile("^(reconnecting|offline)$"))
        first.type_message("first tab here")
        second.type_message("second tab here")
        server.start()
        for chat in (first, second):
            chat.expect_connected(timeout=20_000)
            expect(chat.pending).to_have_count(0, timeout=15_000)  # each got the ack of its own
            for text in ("first tab here", "second tab here"):  # and sees what the other typed, once
                expect(chat.user_texts.filter(has_text=exactly(text))).to_have_count(1)
            assert chat.session_storage().get("chatbot.outbox") is None
            assert chat.errors == []
    finally:
        context.close()


def test_a_message_left_in_the_shared_outbox_of_an_earlier_page_version_is_sent(browser, server):
    context = browser.new_context(locale="en-US")
    try:
        context.add_init_script("""
            if (!sessionStorage.getItem('seeded')) {
              sessionStorage.setItem('seeded', '1');
              localStorage.setItem('chatbot.outbox', JSON.stringify(
                [{type: 'message', id: 'legacy-1', text: 'typed before the upgrade'}]));
            }""")
        chat = ChatPage(context.new_page(), f"http://127.0.0.1:{server.port}/").open()
        expect(chat.user_texts.filter(has_text=exactly("typed before the upgrade"))).to_have_count(1)
        expect(chat.pending).to_have_count(0)
        assert "chatbot.outbox" not in chat.local_storage()
        assert chat.session_storage().get("chatbot.outbox") is None
        assert chat.errors == []
    finally:
        context.close()


@pytest.mark.parametrize("server", [("--rate-limit", "1", "--rate-burst", "4")], indirect=True)
def test_messages_refused_for_the_rate_limit_reach_the_server_in_the_order_typed(open_chat, server):
    chat = open_chat()
    typed = [f"m{n}" for n in range(7)]
    for text in typed[:6]:  # the first few go through; the server drops the others for coming too fast
        chat.type_message(text)
    chat.page.wait_for_timeout(1200)  # the server would take a frame again now, before they are sent again
    chat.type_message(typed[6])
    expect(chat.pending).to_have_count(0, timeout=20_000)  # all delivered, none given up
    assert [e["text"] for e in chat.entries() if e["from"] == "user"] == typed
    stored = server_history(server.port, chat.local_storage()["chatbot.resume"])
    assert [e["text"] for e in stored if e["from"] == "user"] == typed


@pytest.mark.parametrize("server", [("--rate-limit", "1", "--rate-burst", "4")], indirect=True)
def test_a_password_entered_while_the_outbox_waits_goes_when_it_does(open_chat, server):
    chat = open_chat(setup=lambda page: page.add_init_script(SOCKETS))
    chat.click_and_expect(chat.register_button, ASK_NEW_USERNAME)
    chat.exchange("rita_wait", ASK_NEW_PASSWORD)
    # Frames the server drops for coming too fast: the outbox waits. The page's own handler was
    # set when the socket opened, so it has held the outbox by the time this listener counts one.
    chat.page.evaluate("""() => {
      const socket = window.__sockets.at(-1);
      window.__rateLimited = 0;
      socket.addEventListener('message', (event) => {
        if (JSON.parse(event.data).code === 'rate_limited') window.__rateLimited += 1;
      });
      for (let n = 0; n < 6; n++) socket.send(JSON.stringify({type: 'ping'}));
    }""")
    chat.page.wait_for_function("() => window.__rateLimited > 0", timeout=10_000)
    chat.type_message("wait pass 123")
    expect(chat.bot_texts.last).to_have_text(ASK_CONFIRM, timeout=10_000)
    expect(chat.page.locator(".msg.failed")).to_have_count(0)


# --- a conversation that changed under the page ------------------------------------------------
def expire_sessions(data_dir: Path) -> None:
    """Make every session of a stopped server's database older than the idle expiry (30 days)."""
    db = sqlite3.connect(data_dir / "chatbot.db")
    try:
        db.execute("update sessions set updated_at = updated_at - 40 * 86400")
        db.commit()
    finally:
        db.close()


def test_a_tab_that_resumes_the_new_session_another_tab_started_after_an_expiry_starts_over_too(
        open_chat, server):
    first = open_chat()
    second = open_chat(context=first.page.context, console=(FAILED_OFFLINE,))
    for _ in range(2):
        first.exchange("one two three", "To chat with me, please log in or register first.")
    expect(second.bot_texts).to_have_count(3)
    old_token = first.local_storage()["chatbot.resume"]

    server.terminate()
    for chat in (first, second):
        expect(chat.status).to_have_attribute("data-state", re.compile("^(reconnecting|offline)$"))
    expire_sessions(server.data_dir)
    second.set_offline(True)  # so that the first tab is the first back, whatever the backoff
    server.start()
    first.expect_connected(timeout=20_000)
    expect(first.page.get_by_test_id("system-note")).to_have_text(EXPIRED)
    expect(first.bot_texts).to_have_count(1)
    new_token = first.local_storage()["chatbot.resume"]
    assert new_token != old_token

    # The second tab comes back with the token the first one stored: that session resumes, but it
    # is another conversation than the one it shows.
    second.set_offline(False)
    second.expect_connected()
    expect(second.page.get_by_test_id("system-note")).to_have_text(EXPIRED)
    expect(second.bot_texts).to_have_count(1)
    expect(second.bot_texts.first).to_have_text(WELCOME_EN)
    assert second.entries() == first.entries()
    assert second.local_storage()["chatbot.resume"] == new_token

    second.exchange("four five six", "To chat with me, please log in or register first.")
    expect(first.user_texts).to_have_count(1)
    expect(first.bot_texts).to_have_count(2)
    stored = [(e["from"], e["text"]) for e in server_history(server.port, new_token)]
    for chat in (first, second):
        assert [(e["from"], e["text"]) for e in chat.entries()] == [("note", EXPIRED), *stored]


# Holds the hellos the page sends while `__holdHello` is set, until `__releaseHello()`: a reconnect
# whose hello is slow on its way.
HOLD_HELLO = SOCKETS + """
window.__holdHello = false;
window.__held = [];
const Counted = window.WebSocket;
window.WebSocket = class extends Counted {
  send(data) {
    if (window.__holdHello && data.includes('"type":"hello"')) window.__held.push(() => super.send(data));
    else super.send(data);
  }
};
window.__releaseHello = () => { window.__holdHello = false; window.__held.splice(0).forEach(send => send()); };
"""


def test_a_tab_reconnecting_while_another_logs_in_joins_the_login_instead_of_replacing_it(open_chat):
    first = open_chat()
    first.click_and_expect(first.register_button, ASK_NEW_USERNAME)
    first.exchange("jo_race", ASK_NEW_PASSWORD)
    first.exchange("race pass 123", ASK_CONFIRM)
    second = open_chat(context=first.page.context, setup=lambda page: page.add_init_script(HOLD_HELLO))
    second.page.evaluate("window.__holdHello = true; window.__sockets.at(-1).close()")
    second.page.wait_for_function("() => window.__held.length === 1")  # with the token of before the login
    first.exchange("race pass 123", "Your account is ready, jo_race. You are logged in.", listening("jo_race"))
    second.page.evaluate("window.__releaseHello()")  # the token is unknown now: a new session is offered

    second.expect_logged_in("jo_race")
    expect(second.bot_texts.last).to_have_text(listening("jo_race"))
    expect(second.page.get_by_test_id("system-note")).to_have_count(0)
    second.exchange("who am i", "You are logged in as jo_race.")
    assert second.page.evaluate("window.__sockets.length") == 3, "one hello again, not a loop"
    first.reload()  # the stored token is still the login's
    first.expect_logged_in("jo_race")
    assert first.entries() == second.entries()


def say(chat: ChatPage, text: str, reply: str) -> None:
    """`chat.exchange` for a page whose storage throws (its outbox cannot be looked at)."""
    before = chat.bot_texts.count()
    chat.type_message(text)
    expect(chat.bot_texts.nth(before)).to_have_text(exactly(reply))
    expect(chat.pending).to_have_count(0)
    expect(chat.bot_texts).to_have_count(before + 1)


def test_with_its_storage_blocked_the_page_goes_on_with_its_conversation_after_a_server_restart(
        open_chat, server):
    chat = open_chat(setup=lambda page: page.add_init_script(BLOCK_STORAGE))
    assert chat.page.evaluate("() => { try { localStorage; return false; } catch { return true; } }")
    anonymous = "To chat with me, please log in or register first."
    say(chat, "one two three", anonymous)
    say(chat, "four five six", anonymous)
    before = chat.entries()

    server.terminate()
    expect(chat.status).to_have_attribute("data-state", re.compile("^(reconnecting|offline)$"))
    server.start()
    chat.expect_connected(timeout=20_000)
    say(chat, "still there?", anonymous)  # a new session would number its entries from 1 again
    after = [(e["from"], e["text"]) for e in chat.entries()]
    assert after == [*((e["from"], e["text"]) for e in before), ("user", "still there?"), ("bot", anonymous)]


# localStorage, whose quota all the pages of the site share, is full from the start.
FILL_LOCAL_STORAGE = """
if (!sessionStorage.getItem('filled')) {
  sessionStorage.setItem('filled', '1');
  for (const size of [256 * 1024, 1024, 0]) {
    try { for (let n = 0; ; n++) localStorage.setItem(`filler-${size}-${n}`, 'x'.repeat(size)); } catch {}
  }
}
"""

# localStorage takes the first token and refuses the next, as a full quota refuses a value that grows.
REFUSE_A_NEW_TOKEN = """
const setItem = Storage.prototype.setItem;
Storage.prototype.setItem = function (key, value) {
  if (this === localStorage && key === 'chatbot.resume' && this.getItem(key) !== null) {
    throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
  }
  return setItem.call(this, key, value);
};
"""


@pytest.mark.parametrize("full", [FILL_LOCAL_STORAGE, REFUSE_A_NEW_TOKEN])
def test_with_local_storage_full_a_reload_keeps_the_conversation_and_the_login(open_chat, full):
    chat = open_chat(setup=lambda page: page.add_init_script(full))
    chat.exchange("one two three", "To chat with me, please log in or register first.")
    stored_token = "localStorage.getItem('chatbot.resume')"
    before_login = chat.page.evaluate(stored_token)
    register(chat, "max_full", "full storage pass")  # the login's new token is refused
    assert chat.page.evaluate(stored_token) == before_login  # none, or the old one
    before = chat.entries()
    chat.reload()
    chat.expect_logged_in("max_full")
    expect(chat.bot_texts).to_have_count(sum(1 for e in before if e["from"] == "bot"))
    assert chat.entries() == before
    chat.exchange("who am i", "You are logged in as max_full.")


# --- a network that hangs ----------------------------------------------------------------------
@pytest.fixture
def proxy(server):
    """Ask for it before `open_chat`, so that it closes after the pages (which would log the resets)."""
    proxy = TcpProxy(server.port)
    yield proxy
    proxy.close()


def hang_the_network(chat: ChatPage, proxy: TcpProxy) -> None:
    """Break the page's connection; its reconnect attempt is accepted and never answered."""
    proxy.hang()
    proxy.cut()
    expect(chat.status).to_have_attribute("data-state", "reconnecting")
    assert proxy.some_held.wait(10), "the page did not try to reconnect"
    expect(chat.status).to_have_attribute("data-state", "reconnecting")


# When the page makes each WebSocket, by its own clock.
SOCKETS_MADE_AT = """
window.__socketsMadeAt = [];
const TimedSocket = window.WebSocket;
window.WebSocket = class extends TimedSocket {
  constructor(...args) { super(...args); window.__socketsMadeAt.push(performance.now()); }
};
"""


def test_coming_back_online_drops_a_reconnect_attempt_that_hangs(proxy, open_chat):
    chat = open_chat(port=proxy.port, console=(GIVEN_UP,), setup=lambda page: page.add_init_script(SOCKETS_MADE_AT))
    hang_the_network(chat, proxy)
    proxy.forward()
    chat.set_offline(True)  # the laptop moved to another network
    chat.set_offline(False)
    chat.expect_connected()
    # The page's first connection, the attempt that hung, the one that replaced it. Made within
    # 10 s of the hung one, by the page's clock however slow the browser: it was the network's
    # return that dropped the attempt, not the attempt's own timeout.
    made_at = chat.page.evaluate("window.__socketsMadeAt")
    assert made_at[2] - made_at[1] < 10_000, made_at
    chat.exchange("one two three", "To chat with me, please log in or register first.")


def test_a_reconnect_attempt_that_hangs_is_given_up_after_ten_seconds(proxy, open_chat):
    chat = open_chat(port=proxy.port, console=(GIVEN_UP,), setup=lambda page: page.clock.install())
    hang_the_network(chat, proxy)
    proxy.forward()
    chat.page.clock.fast_forward(10_000)
    chat.expect_connected(timeout=8_000)  # the clock runs on meanwhile, but not for a timer of 10 s more
    chat.exchange("one two three", "To chat with me, please log in or register first.")


def test_the_indicator_says_offline_with_the_browser_and_a_connection_that_died_meanwhile_is_replaced(
        proxy, open_chat):
    chat = open_chat(port=proxy.port, setup=lambda page: page.clock.install())
    chat.set_offline(True)
    # Not after its pings: an unanswered one gives the connection up only after 10 s.
    expect(chat.status).to_have_attribute("data-state", "offline", timeout=5_000)
    expect(chat.status).to_have_text("Offline")
    shown_before = len(chat.statuses())
    proxy.freeze()  # the connection died meanwhile, without a close
    chat.set_offline(False)
    chat.expect_connected()  # as far as it knows
    chat.page.clock.fast_forward(10_000)  # the ping sent when the network came back got no answer
    chat.exchange("one two three", "To chat with me, please log in or register first.")
    assert chat.statuses()[shown_before:] == [
        "connected:Connected", "reconnecting:Reconnecting…", "connected:Connected"]


# --- the header's buttons ----------------------------------------------------------------------
def test_a_double_click_on_log_in_or_log_out_acts_once_and_the_focus_stays_on_the_page(open_chat):
    chat = open_chat()
    chat.double_click_and_expect(chat.login_button, "What is your username?")
    expect(chat.login_button).to_be_focused()

    register(chat, "fay_dbl", "double click pass")  # the header's Register works in any state
    chat.logout_button.focus()
    chat.log_out("You are logged out. Bye!", WELCOME_EN, double_click=True)
    chat.expect_anonymous()
    expect(chat.input).to_be_focused()  # not <body>: the focused button is gone
    chat.page.keyboard.type("hi")
    chat.page.keyboard.press("Enter")
    expect(chat.user_texts.last).to_have_text("hi")


def test_enter_held_down_on_log_in_acts_once(open_chat):
    chat = open_chat()
    chat.login_button.focus()
    chat.page.keyboard.down("Enter")
    expect(chat.bot_texts.last).to_have_text("What is your username?")
    for _ in range(5):  # the key's repeats, each after the first press was answered
        chat.page.keyboard.down("Enter")
        chat.page.wait_for_timeout(100)
    chat.page.keyboard.up("Enter")
    chat.exchange("nobody_here", "Your password, please.")
    expect(chat.bot_texts.filter(has_text=exactly("What is your username?"))).to_have_count(1)


def test_a_logout_in_one_tab_clears_the_conversation_in_the_others(open_chat):
    first = open_chat()
    register(first, "gil_tabs", "two tabs pass")
    second = open_chat(context=first.page.context)
    expect(second.user_texts.first).to_have_text("gil_tabs")
    first.log_out("You are logged out. Bye!", WELCOME_EN)
    expect(second.bot_texts.first).to_have_text("You are logged out. Bye!")
    expect(second.bot_texts).to_have_count(2)
    expect(second.user_texts).to_have_count(0)
    second.expect_anonymous()


def test_a_logout_empties_the_message_field_in_every_tab_even_one_away_then(open_chat):
    first = open_chat()
    register(first, "lea_draft", "draft pass 123")
    second = open_chat(context=first.page.context)
    away = open_chat(context=first.page.context, setup=lambda page: page.add_init_script(SOCKETS),
                     console=(FAILED_OFFLINE,))
    away.set_offline(True)
    away.page.evaluate("window.__sockets.at(-1).close()")
    for chat, draft in ((first, "half a sentence"), (second, "my pin is 1234"), (away, "typed, not sent")):
        chat.input.fill(draft)
    first.log_out("You are logged out. Bye!", WELCOME_EN)
    expect(second.bot_texts.first).to_have_text("You are logged out. Bye!")
    away.set_offline(False)
    away.expect_connected()  # its welcome tells it the user left
    away.expect_anonymous()
    for chat in (first, second, away):  # the next person at any of the screens can neither read nor send it
        expect(chat.input).to_have_value("")


def a_tab_goes_away(open_chat, user: str, password: str):
    """A registered user told the bot a name in one tab, which a second tab showed before going offline."""
    first = open_chat()
    register(first, user, password)
    first.exchange("call me Secretname", "Nice to meet you, Secretname! I will remember that.")
    second = open_chat(context=first.page.context, setup=lambda page: page.add_init_script(SOCKETS),
                       console=(FAILED_OFFLINE,))
    expect(second.user_texts.filter(has_text="Secretname")).to_have_count(1)
    second.set_offline(True)
    second.page.evaluate("window.__sockets.at(-1).close()")
    return first, second


def test_a_tab_away_while_its_user_left_and_another_came_clears_on_its_return(open_chat):
    first, second = a_tab_goes_away(open_chat, "hal_away", "away pass 123")
    second.type_message("typed while away")  # the outbox: it must not reach the next user's conversation
    first.log_out("You are logged out. Bye!", WELCOME_EN)
    register(first, "ivy_next", "next pass 123")
    second.set_offline(False)
    second.expect_connected()
    second.expect_logged_in("ivy_next")
    expect(second.page.get_by_text("Secretname")).to_have_count(0)
    expect(second.page.get_by_text("typed while away")).to_have_count(0)
    first.exchange("who am i", "You are logged in as ivy_next.")
    assert "typed while away" not in [entry["text"] for entry in first.entries()]


def test_a_tab_away_while_its_user_logged_out_and_back_in_forgets_what_came_before_on_its_return(open_chat):
    first, second = a_tab_goes_away(open_chat, "kit_back", "back pass 123")
    first.log_out("You are logged out. Bye!", WELCOME_EN)
    first.click_and_expect(first.login_button, "What is your username?")
    first.exchange("kit_back", "Your password, please.")
    first.exchange("back pass 123", "Welcome back, kit_back!", listening("kit_back"))
    second.set_offline(False)
    second.expect_connected()
    second.expect_logged_in("kit_back")  # the same user: nothing told this tab that anyone left
    expect(second.bot_texts.filter(has_text="Welcome back, kit_back!")).to_have_count(1)
    expect(second.page.get_by_text("Secretname")).to_have_count(0)
    assert [entry["text"] for entry in second.entries()] == [entry["text"] for entry in first.entries()]


# The answers to what the page sends are lost on the way while `__deaf` is set (a network that
# drops just then): the server has the frames, the page never hears back.
DEAF_AFTER_SEND = """
window.__sockets = [];
window.__deaf = false;
const Original = window.WebSocket;
window.WebSocket = class extends Original {
  constructor(...args) { super(...args); window.__sockets.push(this); }
  set onmessage(handler) { super.onmessage = (event) => { if (!window.__deaf) handler(event); }; }
};
"""


def test_a_logout_whose_answer_was_lost_leaves_the_header_usable_and_sends_nothing_on(open_chat, server):
    chat = open_chat(setup=lambda page: page.add_init_script(DEAF_AFTER_SEND))
    register(chat, "kim_lost", "lost answer 42")
    chat.page.evaluate("window.__deaf = true")
    chat.logout_button.click()
    chat.type_message("my card number is 1234")
    chat.page.wait_for_timeout(500)  # the server has logged out and answered into the void
    chat.page.evaluate("window.__deaf = false; window.__sockets.at(-1).close()")
    chat.expect_connected()
    expect(chat.page.get_by_test_id("system-note")).to_have_text(EXPIRED)  # the old token was rotated
    chat.expect_anonymous()
    expect(chat.login_button).not_to_have_attribute("aria-disabled", "true")
    chat.click_and_expect(chat.login_button, "What is your username?")
    expect(chat.page.get_by_text("my card number is 1234")).to_have_count(0)
    sent_since = [entry["text"] for entry in chat.entries() if entry["from"] == "user"]
    assert "my card number is 1234" not in sent_since


def test_an_error_is_told_in_the_language_of_the_page(open_chat, server):
    chat = open_chat(locale="ru-RU")
    expect(chat.bot_texts.first).to_have_text(WELCOME_RU)
    for path in Path(server.data_dir).glob("chatbot.db*"):
        path.unlink()  # every write fails from now on: the next message gets internal_error
    chat.type_message("привет")
    expect(chat.page.locator(".msg.failed .msg-status")).to_have_text(
        "не отправлено: сервер не смог это обработать; отправьте ещё раз")


def test_on_a_phone_the_replies_after_a_login_with_a_long_name_stay_in_view(open_chat):
    chat = open_chat(width=360, height=640)
    register(chat, "u123456" + "x" * 25, "long name pass 1")  # the header wraps and grows
    expect(chat.bot_texts.last).to_be_in_viewport()
    assert chat.log.evaluate("log => log.scrollHeight - log.scrollTop - log.clientHeight") < 2


def test_a_text_over_the_server_limit_is_marked_not_sent_whole_not_cut_short(open_chat):
    chat = open_chat()
    expect(chat.bot_texts.first).to_have_text(WELCOME_EN)
    long_text = "word " * 1000  # 5,000 characters, over the default limit of 4,000
    chat.input.fill(long_text)
    assert len(chat.input.input_value()) == 5000, "the field keeps what was pasted"
    chat.input.press("Enter")
    expect(chat.page.locator(".msg.failed .msg-status")).to_have_text("not sent: too long for this server")
    expect(chat.user_texts.last).to_have_text(long_text.strip())


# --- languages in several tabs -----------------------------------------------------------------
def test_a_language_picked_in_one_tab_is_followed_by_the_others_and_kept_when_they_reconnect(open_chat):
    first = open_chat()
    second = open_chat(context=first.page.context, setup=lambda page: page.add_init_script(SOCKETS))
    first.click_and_expect(first.page.get_by_test_id("lang-ru"), "Буду говорить по-русски.", WELCOME_RU)
    expect(second.bot_texts.last).to_have_text(WELCOME_RU)
    expect(second.page.locator("html")).to_have_attribute("lang", "ru")
    expect(second.status).to_have_text("Подключено")
    expect(second.input).to_have_attribute("placeholder", "Введите сообщение")
    expect(second.page.get_by_test_id("lang-ru")).to_have_attribute("aria-pressed", "true")

    # The second tab's connection drops; its new hello must not switch the session back.
    second.page.evaluate("window.__sockets.at(-1).close()")
    second.page.wait_for_function("() => window.__sockets.length === 2")
    second.expect_connected()
    second.exchange("раз два три", "Чтобы поговорить, сначала войдите или зарегистрируйтесь.")
    expect(first.bot_texts.last).to_have_text("Чтобы поговорить, сначала войдите или зарегистрируйтесь.")
    expect(first.page.locator("html")).to_have_attribute("lang", "ru")


# --- show earlier messages ---------------------------------------------------------------------
@pytest.mark.parametrize("server", [("--rate-limit", "1000", "--rate-burst", "1000")], indirect=True)
def test_show_earlier_messages_keeps_the_keyboard_focus(open_chat, server):
    chat = open_chat()
    fill_conversation(server.port, chat.local_storage()["chatbot.resume"], 76)  # 153 entries
    chat.reload()  # shows the newest 100
    earlier = chat.page.get_by_test_id("load-earlier")
    expect(earlier).to_be_visible()
    earlier.focus()
    shown = chat.log.locator(".msg")

    chat.page.keyboard.press("Enter")  # 50 more, and some are left
    expect(shown).to_have_count(150)
    expect(earlier).to_be_visible()
    expect(earlier).to_be_focused()
    expect(earlier).to_be_enabled()

    chat.page.keyboard.press("Enter")  # the rest: nothing earlier is left
    expect(shown).to_have_count(153)
    expect(earlier).to_be_hidden()
    expect(chat.log).to_be_focused()


MISSED = "Some messages from while you were away are no longer available."


@pytest.mark.parametrize("server", [("--history-limit", "20", "--rate-limit", "1000", "--rate-burst", "1000")],
                         indirect=True)
def test_a_tab_back_after_the_server_dropped_what_it_missed_says_so_where_they_were(open_chat, server):
    chat = open_chat(setup=lambda page: page.add_init_script(SOCKETS), console=(FAILED_OFFLINE,))
    anonymous = "To chat with me, please log in or register first."
    chat.exchange("before the drop", anonymous)

    def away_while(messages: int) -> None:
        chat.set_offline(True)
        chat.page.evaluate("window.__sockets.at(-1).close()")
        fill_conversation(server.port, chat.local_storage()["chatbot.resume"], messages)
        chat.set_offline(False)
        chat.expect_connected()
        expect(chat.user_texts.last).to_have_text(f"message {messages - 1}")

    away_while(30)  # 60 entries: the server keeps the last 20
    texts = [e["text"] for e in chat.entries()]
    assert texts[1:6] == ["before the drop", anonymous, MISSED, "message 20", anonymous]
    away_while(2)  # nothing dropped: no note
    expect(chat.page.get_by_test_id("system-note")).to_have_count(1)


@pytest.mark.parametrize("server", [("--new-sessions-per-ip", "1")], indirect=True)
def test_a_page_refused_a_new_session_says_so_once_in_its_language(open_chat, browser, server):
    open_chat()  # the one new session this address may start this minute
    context = browser.new_context(locale="ru-RU")
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{server.port}/")
        notes = page.get_by_test_id("system-note")
        expect(notes).to_have_text(["из вашей сети только что начато слишком много разговоров; скоро попробуем снова"])
        page.wait_for_timeout(3000)  # the page tries again meanwhile, and is refused again
        expect(notes).to_have_count(1)
        expect(page.locator("[data-state]")).not_to_have_attribute("data-state", "connected")
    finally:
        context.close()


@pytest.mark.parametrize("server", [("--new-sessions-per-ip", "12")], indirect=True)
def test_a_message_typed_while_refused_leaves_one_note_above_the_conversation(open_chat, browser, server):
    import asyncio
    import threading

    from tests.server_helpers import Client

    async def start_sessions(count: int) -> None:
        for _ in range(count):
            client = await Client.connect(server.port)
            await client.hello()
            client.close()

    # This address's new sessions for now (the next in 5 s); on a thread, away from Playwright's loop.
    starting = threading.Thread(target=asyncio.run, args=(start_sessions(12),))
    starting.start()
    starting.join(30)
    context = browser.new_context(locale="en-US")
    try:
        chat = ChatPage(context.new_page(), f"http://127.0.0.1:{server.port}/")
        chat.page.goto(chat.url)
        notes = chat.page.get_by_test_id("system-note")
        refused = "too many new conversations from your network just now; trying again shortly"
        expect(notes).to_have_text([refused])
        chat.type_message("typed while refused")  # a "sending…" bubble now ends the log
        chat.expect_connected(timeout=20_000)  # after a few refusals, the next session is allowed
        expect(chat.pending).to_have_count(0)
        for n in range(2):
            chat.exchange(f"later {n}", re.compile(".+"))
        entries = chat.entries()
        assert [e["text"] for e in entries if e["from"] == "note"] == [refused], "one note, however many refusals"
        assert entries[0]["from"] == "note", "before the conversation, not among its messages"
        assert [e["text"] for e in entries if e["from"] == "user"] == ["typed while refused", "later 0", "later 1"]
        assert entries[-1]["from"] == "bot"
    finally:
        context.close()


# An `auth` frame is held back until the `ack` of its turn has been handled, as a catch-up between
# servers can send it after the turn's replies.
AUTH_AFTER_THE_REPLIES = """
const Original = window.WebSocket;
window.WebSocket = class extends Original {
  set onmessage(handler) {
    let held = null;
    super.onmessage = (event) => {
      const type = JSON.parse(event.data).type;
      if (type === 'auth') { held = event; return; }
      handler(event);
      if (type === 'ack' && held) { handler(held); held = null; }
    };
  }
};
"""


def test_an_auth_that_comes_after_the_replies_of_its_logout_keeps_them(open_chat):
    chat = open_chat(setup=lambda page: page.add_init_script(AUTH_AFTER_THE_REPLIES))
    register(chat, "lou_late", "late pass 123")
    chat.exchange("call me Secretname", "Nice to meet you, Secretname! I will remember that.")
    chat.logout_button.click()
    chat.expect_anonymous()
    expect(chat.bot_texts).to_have_text(["You are logged out. Bye!", WELCOME_EN])
    expect(chat.page.get_by_text("Secretname")).to_have_count(0)
