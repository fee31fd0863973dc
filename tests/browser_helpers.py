"""Debian's Chromium driven by Playwright, and the chat page as a person sees it, for the browser tests."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, Playwright, expect

from tests.server_helpers import Client

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

# Every connection-indicator state the page shows, in order, however briefly: a restart can pass
# through "Reconnecting…" faster than any polling would notice.
STATUS_RECORDER = """
window.__statusLog = [];
new MutationObserver(() => {
  const status = document.getElementById('status');
  if (!status) return;
  const shown = `${status.dataset.state}:${status.textContent}`;
  if (window.__statusLog[window.__statusLog.length - 1] !== shown) window.__statusLog.push(shown);
}).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
"""

# Everything the page ever writes to its storage, including what it removes again at once.
STORAGE_RECORDER = """
window.__storageWrites = [];
const setItem = Storage.prototype.setItem;
Storage.prototype.setItem = function (key, value) {
  window.__storageWrites.push(`${key}=${value}`);
  return setItem.call(this, key, value);
};
"""

# The log as a person reads it: who said what, the quick replies (and whether they can be
# pressed), and the delivery status of the user's own messages.
READ_LOG = """
log => [...log.children].map(el => ({
  from: el.dataset.from || 'note',
  text: (el.querySelector('.msg-text') || el).textContent,
  buttons: [...el.querySelectorAll('.quick-reply')].map(b => b.textContent + (b.disabled ? ' (off)' : '')),
  status: el.querySelector('.msg-status')?.textContent || null,
}))
"""

# The page itself never scrolls (only the conversation does), nothing sticks out past the screen's
# edge, and nothing is wider inside than its box (a long word scrolling sideways in the log).
LAYOUT = """
() => {
  const root = document.documentElement, width = root.clientWidth, problems = [];
  if (root.scrollWidth > width) problems.push(`the page is ${root.scrollWidth}px wide, the screen ${width}px`);
  if (root.scrollHeight > root.clientHeight) {
    problems.push(`the page is ${root.scrollHeight}px high, the screen ${root.clientHeight}px`);
  }
  const name = el => `${el.tagName.toLowerCase()}#${el.id}.${el.className}`;
  for (const el of document.querySelectorAll('body *')) {
    if (!el.getClientRects().length || el.closest('.sr-only')) continue;
    const box = el.getBoundingClientRect();
    if (box.left < -0.5 || box.right > width + 0.5) problems.push(`${name(el)} sticks out`);
    if (el.tagName !== 'INPUT' && el.scrollWidth > el.clientWidth + 1) problems.push(`${name(el)} overflows`);
  }
  return problems;
}
"""


# A browser whose storage is blocked (some privacy settings, some embedded views): even reading
# `localStorage` or `sessionStorage` throws.
BLOCK_STORAGE = """
for (const name of ['localStorage', 'sessionStorage']) {
  Object.defineProperty(window, name, {
    get() { throw new DOMException('The operation is insecure.', 'SecurityError'); },
  });
}
"""

# Every WebSocket the page opens, in `window.__sockets`, so a test can drop one as a network would.
SOCKETS = """
window.__sockets = [];
const PageSocket = window.WebSocket;
window.WebSocket = class extends PageSocket {
  constructor(...args) { super(...args); window.__sockets.push(this); }
};
"""


def launch_chromium(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


def exactly(text: str) -> re.Pattern:
    return re.compile(f"^{re.escape(text)}$")


class ChatPage:
    """The chat page in one browser tab, with the waits a person would do by eye."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url
        self.errors: list[str] = []  # uncaught exceptions in the page's script
        self.dialogs: list[str] = []  # alert(), confirm(), … that fired
        self.console: list[str] = []  # the console's errors and warnings (CSP violations, failed loads)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", lambda message: message.type in ("error", "warning")
                and self.console.append(message.text))
        page.on("dialog", self._on_dialog)
        page.add_init_script(STATUS_RECORDER)
        page.add_init_script(STORAGE_RECORDER)
        self.status = page.get_by_test_id("connection-status")
        self.input = page.get_by_test_id("message-input")
        self.log = page.get_by_test_id("chat-log")
        self.bot_texts = page.locator(".msg-bot .msg-text")
        self.user_texts = page.locator(".msg-user .msg-text")
        self.pending = page.locator(".msg.pending, .msg.failed")
        self.login_button = page.get_by_test_id("login-button")
        self.register_button = page.get_by_test_id("register-button")
        self.logout_button = page.get_by_test_id("logout-button")
        self.user_name = page.get_by_test_id("user-name")
        self._devtools = None

    def _on_dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def open(self) -> "ChatPage":
        self.page.goto(self.url)
        self._expect_loaded()
        return self

    def reload(self) -> None:
        self.page.reload()
        self._expect_loaded()

    def _expect_loaded(self) -> None:
        # A new session's greeting, or a resumed one's history, arrives in one frame after welcome.
        self.expect_connected()
        expect(self.bot_texts.first).to_be_visible()

    def expect_connected(self, timeout: float = 10_000) -> None:
        expect(self.status).to_have_attribute("data-state", "connected", timeout=timeout)

    def quick_reply(self, label: str) -> Locator:
        """A button of the latest reply: the only quick replies that can be pressed."""
        latest = self.page.locator(".msg-bot").last
        return latest.get_by_test_id("quick-reply").filter(has_text=exactly(label))

    def entries(self) -> list[dict]:
        return self.log.evaluate(READ_LOG)

    def statuses(self) -> list[str]:
        return self.page.evaluate("window.__statusLog")

    def local_storage(self) -> dict[str, str]:
        return self.page.evaluate("() => ({...localStorage})")

    def session_storage(self) -> dict[str, str]:
        return self.page.evaluate("() => ({...sessionStorage})")

    def layout_problems(self) -> list[str]:
        return self.page.evaluate(LAYOUT)

    def storage_writes(self) -> list[str]:
        """Every `key=value` this page load has written to localStorage or sessionStorage."""
        return self.page.evaluate("window.__storageWrites")

    def type_message(self, text: str) -> None:
        """Type into the field and press Enter, as a person does."""
        self.input.fill(text)
        self.input.press("Enter")

    def exchange(self, text: str | None, *replies: str | re.Pattern, press: str | None = None) -> None:
        """Send `text` (or press the latest reply's quick reply `press`); expect exactly these replies."""
        before = self.bot_texts.count()
        if press is not None:
            self.quick_reply(press).click()
        else:
            self.type_message(text)
        self._expect_replies(before, replies)

    def click_and_expect(self, button: Locator, *replies: str | re.Pattern) -> None:
        before = self.bot_texts.count()
        button.click()
        self._expect_replies(before, replies)

    def double_click_and_expect(self, button: Locator, *replies: str | re.Pattern) -> None:
        """Double-click `button`; expect exactly these replies, whatever the second click sent."""
        before = self.bot_texts.count()
        button.dblclick()
        self._expect_replies(before, replies)

    def log_out(self, *replies: str | re.Pattern, double_click: bool = False) -> None:
        """Log out with the header's button; expect the conversation cleared, these replies alone on display."""
        if double_click:
            self.logout_button.dblclick()
        else:
            self.logout_button.click()
        self._expect_replies(0, replies)
        expect(self.user_texts).to_have_count(0)

    def set_offline(self, offline: bool) -> None:
        """This tab alone loses (or gets back) the network, as DevTools' "Offline" does: new
        connections fail at once, and the page gets `offline` and `online` events."""
        if self._devtools is None:  # one session: the conditions one sets, another would not undo
            self._devtools = self.page.context.new_cdp_session(self.page)
        self._devtools.send("Network.emulateNetworkConditions", {
            "offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})

    def _expect_replies(self, before: int, replies: tuple[str | re.Pattern, ...]) -> None:
        for offset, reply in enumerate(replies):
            expected = exactly(reply) if isinstance(reply, str) else reply
            expect(self.bot_texts.nth(before + offset)).to_have_text(expected)
        # Every ack is in (it follows the replies it caused), so no further reply is on its way.
        expect(self.pending).to_have_count(0)
        self.page.wait_for_function("() => !sessionStorage.getItem('chatbot.outbox')")
        expect(self.bot_texts).to_have_count(before + len(replies))

    def expect_anonymous(self) -> None:
        expect(self.login_button).to_be_visible()
        expect(self.register_button).to_be_visible()
        expect(self.logout_button).to_be_hidden()
        expect(self.user_name).to_be_hidden()

    def expect_logged_in(self, user: str) -> None:
        expect(self.user_name).to_be_visible()
        expect(self.user_name).to_have_text(user)
        expect(self.logout_button).to_be_visible()
        expect(self.login_button).to_be_hidden()
        expect(self.register_button).to_be_hidden()


def server_history(port: int, token: str, limit: int = 500) -> list[dict]:
    """The session's entries as the server stores them, read by a WebSocket client of its own.

    The client runs its own event loop in a thread: Playwright's sync API owns this thread's.
    """
    async def read() -> list[dict]:
        client = await Client.connect(port)
        try:
            welcome = await client.hello(resume=token, history=limit)
            assert welcome["resumed"] is True, f"the page's token did not resume its session: {welcome}"
            frames = await client.recv_until("history")
            return frames[-1]["entries"]
        finally:
            client.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result(timeout=30)


async def _fill(port: int, token: str, messages: int) -> None:
    client = await Client.connect(port)
    try:
        welcome = await client.hello(resume=token)
        assert welcome["resumed"] is True, f"the page's token did not resume its session: {welcome}"
        for n in range(messages):
            await client.say(f"message {n}")
    finally:
        client.close()


def fill_conversation(port: int, token: str, messages: int) -> None:
    """Send `messages` messages into the page's session from a client of its own (each is an
    entry, and so is the bot's reply), far faster than typing them into the page."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _fill(port, token, messages)).result(timeout=60)
