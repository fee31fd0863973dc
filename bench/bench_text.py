"""Time normalise() and IntentMatcher.match() on a flow-sized set of intents.

Run: .venv/bin/python bench/bench_text.py
The flow has 10 intents with keywords in two languages, 3 patterns and 50 examples.
Each line prints microseconds per call (best of several repeats, normalisation included) of a
text the matcher has not answered before; the last line, of one it has (short texts are
remembered).
"""

from __future__ import annotations

import timeit

from chatbot.text import IntentMatcher, IntentSpec, normalise

EXAMPLES = {
    "greet": ["good morning", "good evening", "hi there", "hello bot", "hey you"],
    "bye": ["see you later", "good night", "talk to you soon", "i have to go", "bye for now"],
    "help": ["what can you do", "how does this work", "show me the commands", "i need help",
             "what are my options"],
    "password": ["i forgot my password", "reset my password", "change my password",
                 "i cannot log in", "my password does not work"],
    "register": ["create an account", "sign me up", "i want to register", "new account please",
                 "make me a user"],
    "login": ["log me in", "sign in please", "i want to log in", "let me in", "open my account"],
    "yes": ["yes please", "sure thing", "of course", "that is right", "go ahead"],
    "no": ["no thanks", "not now", "i do not want", "cancel that", "never mind"],
    "weather": ["what is the weather", "will it rain today", "is it cold outside",
                "weather forecast please", "how warm is it"],
    "thanks": ["thank you very much", "thanks a lot", "much appreciated", "cheers mate",
               "that was helpful"],
}
KEYWORDS = {
    "greet": (["hello", "hi", "👋"], ["привет", "здравствуйте"]),
    "bye": (["bye", "goodbye"], ["пока", "до свидания"]),
    "help": (["help", "commands"], ["помощь", "помоги"]),
    "password": (["password", "reset password"], ["пароль"]),
    "register": (["register", "sign up"], ["регистрация"]),
    "login": (["login", "log in"], ["войти", "вход"]),
    "yes": (["yes", "yep"], ["да", "ага"]),
    "no": (["no", "nope"], ["нет"]),
    "weather": (["weather", "forecast"], ["погода"]),
    "thanks": (["thanks", "thank you"], ["спасибо"]),
}
PATTERNS = {
    "login": [r"^log ?in as (?P<username>\w+)$"],
    "register": [r"^call me (?P<nickname>.+)$"],
    "weather": [r"weather in (?P<city>\w+)"],
}
MESSAGES = {
    "exact keyword": "Hello there!",
    "typo keyword": "i forgot my pasword",
    "example": "what can yuo do?",
    "pattern": "log in as Ann",
    "no match": "the quick brown fox jumps over the lazy dog",
    "cyrillic typo": "прривет, как дела",
}


def build() -> IntentMatcher:
    intents = [
        IntentSpec(name, keywords={"en": en, "ru": ru}, examples={"en": EXAMPLES[name]},
                   patterns={"en": PATTERNS.get(name, [])})
        for name, (en, ru) in KEYWORDS.items()
    ]
    return IntentMatcher(intents)


def per_call_us(call, number: int = 20000) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6


def main() -> None:
    matcher = build()
    candidates = frozenset(["greet", "help", "password", "yes", "no"])
    for label, text in MESSAGES.items():
        found = matcher.match(text, "en")
        # Passing the normalised text skips the remembered answers: this is the search itself.
        every = per_call_us(lambda: matcher.match(text, "en", normalised=normalise(text)))
        some = per_call_us(lambda: matcher.match(text, "en", candidates, normalised=normalise(text)))
        print(f"{label:14} {every:6.1f} µs/match  {some:6.1f} µs/match (5 candidates)  "
              f"→ {found.intent if found else None}")
    text = MESSAGES["typo keyword"]
    print(f"{'normalise':14} {per_call_us(lambda: normalise(text)):6.1f} µs/call")
    print(f"{'seen before':14} {per_call_us(lambda: matcher.match(text, 'en')):6.1f} µs/match")


if __name__ == "__main__":
    main()
