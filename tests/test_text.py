import sys
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatbot.patterns import PatternTimeout
from chatbot.text import IntentMatcher, IntentSpec, Match, extract, normalise


@pytest.mark.parametrize("raw, expected", [
    ("Привет, Мир!", "привет мир"),
    ("Ёлка и ЁЖ", "елка и еж"),
    ("е\u0308лка", "елка"),                      # decomposed ё composes first, then folds
    ("HeLLo WoRLD", "hello world"),
    ("Straße", "strasse"),
    ("ＨＥＬＬＯ　ｗｏｒｌｄ", "hello world"),       # full-width letters and ideographic space
    ("ﬁne", "fine"),                              # ligature
    ("what's up?!", "what s up"),
    ("«цитата» — тире…", "цитата тире"),
    ("hello,world", "hello world"),
    ("  many \t\n spaces\u00a0here  ", "many spaces here"),
    ("👋", "👋"),
    ("hi 👋🏽 ❤️", "hi 👋 ❤"),                      # skin tone and variation selector dropped
    ("$5 + 3 = 8 €", "$5 + 3 = 8 €"),             # symbols are not punctuation
    ("?!...", ""),
    ("", ""),
])
def test_normalise(raw, expected):
    assert normalise(raw) == expected


def test_normalise_keeps_lone_surrogates():
    assert normalise("A\ud800B") == "a\ud800b"


def test_every_punctuation_and_pictorial_symbol_is_in_the_first_two_planes():
    # normalise() only scans planes 0 and 1 for punctuation (P*) and for the symbols it splits
    # off words (So); this keeps that true on upgrades.
    beyond = [hex(c) for c in range(0x20000, sys.maxunicode + 1)
              if unicodedata.category(chr(c)).startswith("P") or unicodedata.category(chr(c)) == "So"]
    assert beyond == []


@pytest.mark.parametrize("raw, expected", [
    ("hi👋", "hi 👋"),
    ("👋hi", "👋 hi"),
    ("thx🙏🙏", "thx 🙏🙏"),                      # a run of emoji stays one word
    ("ok👍🏽!", "ok 👍"),                          # the skin tone goes, the split stays
    ("привет👋мир", "привет 👋 мир"),
    ("ok✅ $5 c++", "ok ✅ $5 c++"),               # maths and currency signs stay with their word
    ("a👨\u200d👩\u200d👧b", "a 👨\u200d👩\u200d👧 b"),  # a joined emoji is not cut apart
])
def test_normalise_splits_an_emoji_off_the_word_it_is_glued_to(raw, expected):
    assert normalise(raw) == expected


# Characters that fold, compose or get dropped: where a single pass would not be a fixed point.
_TRICKY = "ёЁеa\u0308\u0301ß\u0345Σﬁ\u1100\u1161\u11a8\ufe0f\U0001f3fd👋! \u00a0\ud800\udfffİ"


@settings(max_examples=500)
@given(st.text(st.one_of(st.characters(exclude_categories=()), st.sampled_from(_TRICKY))))
@example("ё\u0308")              # folding 'ё' leaves 'е' + U+0308, which composes to 'ё' again
@example("a\U0001f3fd\u0301")    # dropping the skin tone brings 'a' and its accent together
def test_normalise_is_idempotent_and_total(text):
    once = normalise(text)
    assert normalise(once) == once


GREET = IntentSpec("greet",
                   keywords={"en": ["hello", "hi", "👋"], "ru": ["привет", "здравствуйте"]},
                   examples={"en": ["good morning to you"]})
PASSWORD = IntentSpec("password",
                      keywords={"en": ["password", "reset password"], "ru": ["пароль"]},
                      examples={"en": ["i forgot my password"], "ru": ["я забыл пароль"]})
HELP = IntentSpec("help", keywords={"en": ["help"], "ru": ["помощь"]},
                  examples={"en": ["what can you do"], "ru": ["что ты умеешь"]})
NAME = IntentSpec("name", patterns={"en": [r"call me (?P<nickname>.+)"],
                                    "ru": [r"зови меня (?P<nickname>.+)"]})
BYE = IntentSpec("bye", keywords={"en": ["bye", "goodbye"], "ru": ["пока"]}, threshold=95)


@pytest.fixture
def matcher():
    return IntentMatcher([GREET, PASSWORD, HELP, NAME, BYE])


@pytest.mark.parametrize("text, lang, intent, via", [
    ("hello", "en", "greet", "keyword"),
    ("HeLLo there!", "en", "greet", "keyword"),
    ("helo", "en", "greet", "keyword"),
    ("hellooo", "en", "greet", "keyword"),
    ("Hi", "en", "greet", "keyword"),
    ("👋", "en", "greet", "keyword"),
    ("hey👋", "en", "greet", "keyword"),            # emoji glued to a word
    ("👋🏽", "en", "greet", "keyword"),
    ("Привет!", "ru", "greet", "keyword"),
    ("прривет", "ru", "greet", "keyword"),
    ("ПРИВЕТ", "ru", "greet", "keyword"),
    ("привет", "en", "greet", "keyword"),            # Russian typed in an English session
    ("hello", "ru", "greet", "keyword"),
    ("пароль", "ru", "password", "keyword"),
    ("Пароль?", "ru", "password", "keyword"),
    ("пороль", "ru", "password", "keyword"),
    ("паролль", "ru", "password", "keyword"),
    ("пароля", "ru", "password", "keyword"),
    ("pasword", "en", "password", "keyword"),
    ("I need to reset my Password", "en", "password", "keyword"),
    ("reset pasword", "en", "password", "keyword"),
    ("What can you do?", "en", "help", "example"),
    ("what can yuo do", "en", "help", "example"),
    ("what do you can", "en", "help", "example"),
    ("Что ты умеешь?", "ru", "help", "example"),
    ("i forgott my passwrd", "en", "password", "example"),
    ("good mornin to you", "en", "greet", "example"),
    ("call me Ann", "en", "name", "pattern"),
    ("Зови меня Аня", "en", "name", "pattern"),
])
def test_match_finds_intent(matcher, text, lang, intent, via):
    found = matcher.match(text, lang)
    assert found is not None, text
    assert (found.intent, found.via) == (intent, via)
    assert 0 <= found.score <= 100


@pytest.mark.parametrize("text", [
    "ok", "lol", "yes", "no", "do", "hm", "?", "", "   ", "all", "top", "hel", "the weather",
    "what", "you", "pass", "привет123абв", "погода", "🙂", "x" * 500, "a\ud800",
])
def test_match_ignores_unrelated_text(matcher, text):
    assert matcher.match(text, "en") is None


def test_an_emoji_glued_to_a_keyword_does_not_hide_it():
    thanks = IntentSpec("thanks", keywords={"en": ["thx", "thank you"]}, patterns={"en": ["^🙏+$"]})
    matcher = IntentMatcher([thanks])
    for text in ("thx🙏", "🙏thx", "thank you🙏🙏", "🙏🙏"):
        assert matcher.match(text, "en").intent == "thanks", text


def test_a_slot_keeps_the_emoji_glued_to_it():
    matcher = IntentMatcher([NAME])
    assert normalise("call me Ann👋!") == "call me ann 👋"
    assert matcher.match("call me Ann👋!", "en").slots == {"nickname": "Ann👋"}


@pytest.mark.parametrize("text, keyword", [
    ("logo", "logout"),               # cut short: another word, not a typo
    ("can you make me a logo", "logout"),
    ("sign", "signin"),
    ("hell", "hello"),                # a last letter missing is forgiven from six letters only
    ("signing", "signin"),            # lengthened: another word too
    ("registered", "register"),
    ("hallu", "hello"),               # two slips in a short word
    ("sign it", "sign in"),           # a short word of a phrase must be exact
    ("stop watch", "stop watching"),
])
def test_only_real_typos_match_a_keyword(text, keyword):
    # A threshold this low accepts any of these scores: only the typo rule can refuse.
    matcher = IntentMatcher([IntentSpec("x", keywords={"en": [keyword]})], threshold=50)
    assert matcher.match(text, "en") is None


def test_a_typo_is_one_slip_or_two_in_a_long_word():
    matcher = IntentMatcher([IntentSpec("x", keywords={"en": ["password", "hello", "выход"]})],
                            threshold=50)
    # one slip (a letter wrong, missing, extra, two swapped), two in a word of eight or more,
    # and a repeated last letter (the one lengthening that is a typo)
    for typo in ("pasword", "passwrod", "paswrod", "hallo", "hlelo", "helo", "выхд", "вход",
                 "hellooo", "passwordd", "passwor"):
        assert matcher.match(typo, "en").intent == "x", typo
    for other in ("pswrd", "passwo", "passwords", "hallu", "heo", "выходит", "выхода", "hellox"):
        assert matcher.match(other, "en") is None, other


def test_an_example_word_swapped_for_another_is_not_a_typo():
    how = IntentSpec("how_are_you", examples={"en": ["how are you", "how is it going"]})
    name = IntentSpec("name", examples={"en": ["what is my name"]})
    matcher = IntentMatcher([how, name])
    assert matcher.match("who are you", "en") is None          # 91 by characters, 67 by words
    assert matcher.match("who is it going", "en") is None
    # words within one slip still count: a transposition, and the 's' of "what's" for 'is'
    assert matcher.match("how are yuo", "en").intent == "how_are_you"
    assert matcher.match("what's my name", "en").intent == "name"


def test_exact_match_scores_100(matcher):
    assert matcher.match("hello", "en") == Match("greet", 100.0, "keyword", {})


def test_pattern_slots_come_from_raw_text(matcher):
    assert matcher.match("Call me Ann-Marie!", "en").slots == {"nickname": "Ann-Marie"}
    assert matcher.match("call me O'Brien", "en").slots == {"nickname": "O'Brien"}
    assert matcher.match("ЗОВИ МЕНЯ Ёжик", "ru").slots == {"nickname": "Ёжик"}


def test_pattern_slots_fall_back_to_normalised_text_when_raw_does_not_line_up(matcher):
    # 'е' + combining diaeresis composes only when normalised as a whole
    assert matcher.match("call me Пе\u0308тр", "en").slots == {"nickname": "петр"}


def test_pattern_sees_normalised_text():
    matcher = IntentMatcher([IntentSpec("stop", patterns={"en": [r"^stop it$"]})])
    assert matcher.match("  STOP, it!!", "en").intent == "stop"


def test_a_pattern_that_runs_away_stops_the_match_each_time_it_is_asked():
    matcher = IntentMatcher([IntentSpec("greet", keywords={"en": ["hello"]}),
                             IntentSpec("runaway", patterns={"en": [r"^(a|aa)+$"]})])
    for _ in range(2):  # a text that timed out is not remembered as matching nothing
        with pytest.raises(PatternTimeout) as raised:
            matcher.match("a" * 40 + "b", "en")
        assert raised.value.where == "intents.runaway.patterns.en[0]"
    assert matcher.match("hello", "en").intent == "greet"


def test_a_capture_pattern_that_runs_away_raises():
    with pytest.raises(PatternTimeout, match="^capture pattern: took longer"):
        extract("regex", "a" * 40 + "b", pattern=r"^(a|aa)+$")


def test_named_groups_may_be_written_as_in_perl():
    matcher = IntentMatcher([IntentSpec("name", patterns={"en": [r"^call me (?<nickname>.+)$"]})])
    assert matcher.match("call me Ann", "en").slots == {"nickname": "Ann"}


def test_optional_group_that_did_not_take_part_is_not_a_slot():
    spec = IntentSpec("order", patterns={"en": [r"order(?: (?P<count>\d+))?"]})
    matcher = IntentMatcher([spec])
    assert matcher.match("order", "en").slots == {}
    assert matcher.match("order 3 please", "en").slots == {"count": "3"}


def test_candidates_limit_the_intents_considered(matcher):
    assert matcher.match("hello", "en", candidates={"password", "help"}) is None
    assert matcher.match("hello", "en", candidates=["greet"]).intent == "greet"
    assert matcher.match("hello", "en", candidates=()) is None
    assert matcher.match("hello", "en", candidates={"no_such_intent"}) is None


def test_normalised_argument_is_used(matcher):
    assert matcher.match("ignored", "en", normalised="hello").intent == "greet"


def test_near_miss_below_threshold_is_not_a_match(matcher):
    assert matcher.match("goodbye", "en").intent == "bye"
    assert matcher.match("goodbey", "en") is None                    # 86 < bye's own 95
    strict = IntentMatcher([GREET], threshold=90)
    assert strict.match("helo", "en") is None                        # 89 < 90
    assert IntentMatcher([GREET], threshold=88).match("helo", "en").intent == "greet"


def test_per_intent_threshold_does_not_hide_other_intents():
    # 'help' is one slip from 'helo' (a typo) but scores 75, only enough for the loose threshold
    loose = IntentSpec("loose", keywords={"en": ["help"]}, threshold=50)
    strict = IntentSpec("strict", keywords={"en": ["hello"]}, threshold=99)
    # 'helo' is closer to 'hello' but below strict's threshold; the looser intent still counts
    assert IntentMatcher([strict, loose]).match("helo", "en").intent == "loose"


def test_best_score_wins_over_declaration_order():
    first = IntentSpec("first", keywords={"en": ["hallo"]})
    second = IntentSpec("second", keywords={"en": ["hello"]})
    assert IntentMatcher([first, second]).match("helo", "en").intent == "second"


def test_ties_prefer_pattern_then_keyword_then_example():
    by_example = IntentSpec("by_example", examples={"en": ["open"]})
    by_keyword = IntentSpec("by_keyword", keywords={"en": ["open"]})
    by_pattern = IntentSpec("by_pattern", patterns={"en": ["^open$"]})
    assert IntentMatcher([by_example, by_keyword, by_pattern]).match("open", "en").intent == "by_pattern"
    assert IntentMatcher([by_example, by_keyword]).match("open", "en").intent == "by_keyword"


def test_equal_fuzzy_scores_prefer_keyword_then_declaration_order():
    by_example = IntentSpec("by_example", examples={"en": ["helo"]})
    by_keyword = IntentSpec("by_keyword", keywords={"en": ["helo"]})
    found = IntentMatcher([by_example, by_keyword]).match("hello", "en")
    assert (found.intent, found.via) == ("by_keyword", "keyword")
    # equal scores in groups of different thresholds still go to the intent declared first
    first = IntentSpec("first", keywords={"en": ["hullo"]})
    second = IntentSpec("second", keywords={"en": ["hallo"]}, threshold=70)
    assert IntentMatcher([first, second]).match("hello", "en").intent == "first"


def test_ties_prefer_session_language_then_declaration_order():
    english = IntentSpec("english", keywords={"en": ["okay"]})
    russian = IntentSpec("russian", keywords={"ru": ["okay"]})
    matcher = IntentMatcher([english, russian])
    assert matcher.match("okay", "en").intent == "english"
    assert matcher.match("okay", "ru").intent == "russian"
    assert matcher.match("okay", "de").intent == "english"
    assert matcher.match("okayy", "ru").intent == "russian"       # also for typo scores
    assert matcher.match("okayy", "en").intent == "english"


def test_short_text_does_not_match_long_example():
    matcher = IntentMatcher([HELP], threshold=60)
    assert matcher.match("do", "en") is None
    assert matcher.match("you", "en") is None


@pytest.mark.parametrize("spec, message", [
    (IntentSpec("bad", patterns={"en": ["ok", "(unclosed"]}),
     "intents.bad.patterns.en[1]: invalid regular expression: missing ) at position 9"),
    (IntentSpec("bad", keywords={"en": "hello"}),
     "intents.bad.keywords.en: expected a list of strings, got str"),
    (IntentSpec("bad", examples={"en": ["fine", 3]}),
     "intents.bad.examples.en[1]: expected a string, got int"),
    (IntentSpec("bad", keywords=["hello"]),
     "intents.bad.keywords: expected a mapping of language to list, got list"),
    (IntentSpec("bad", keywords={"en": ["?"]}),
     "intents.bad.keywords.en[0]: '?' is empty once punctuation is removed"),
    (IntentSpec("bad", threshold=101),
     "intents.bad.threshold: expected a number from 0 to 100, got 101"),
    (IntentSpec("bad", threshold="high"),
     "intents.bad.threshold: expected a number from 0 to 100, got 'high'"),
])
def test_bad_intent_is_rejected_with_its_location(spec, message):
    with pytest.raises(ValueError) as caught:
        IntentMatcher([spec])
    assert str(caught.value) == message


def test_bad_matcher_settings_are_rejected():
    with pytest.raises(ValueError, match=r"^intents\.greet: defined more than once$"):
        IntentMatcher([GREET, GREET])
    with pytest.raises(ValueError, match=r"^threshold: expected a number from 0 to 100, got -1$"):
        IntentMatcher([GREET], threshold=-1)


@pytest.mark.parametrize("kind, text, expected", [
    ("text", "  Ann Smith \n", "Ann Smith"),
    ("text", "   ", None),
    ("text", "", None),
    ("number", "I am 42 years old", "42"),
    ("number", "about -3.5 degrees", "-3.5"),
    ("number", "3,5 kg", "3.5"),
    ("number", "−7", "-7"),                      # U+2212 minus sign
    ("number", "+8", "8"),
    ("number", "007", "7"),
    ("number", "2.50", "2.5"),
    ("number", "-0", "0"),
    ("number", "100", "100"),
    ("number", "４２", "42"),                     # full-width digits
    ("number", "٤٢", "42"),                      # Arabic-Indic digits
    ("number", "covid-19", "19"),                # a hyphen inside a word is not a sign
    ("number", "1, 2, 3", "1"),
    ("number", "9" * 5000, "9" * 5000),          # longer than int() accepts
    ("number", "no digits here", None),
    ("number", "", None),
    ("email", "write to John.Doe@Example.COM.", "John.Doe@example.com"),
    ("email", "a+tag@mail.example.org", "a+tag@mail.example.org"),
    ("email", "почта: иван@пример.рф", "иван@пример.рф"),
    ("email", "ann＠example.com", "ann@example.com"),
    ("email", "not an email @ all", None),
    ("email", "user@localhost", None),
    ("email", "user@-bad.com", None),
    ("email", "", None),
    ("word", "  Anne-Marie, hi", "Anne-Marie"),
    ("word", "--- ok", "ok"),
    ("word", "मैं राहुल हूँ", "मैं"),  # vowel signs and the nasal mark are part of the word
    ("word", "नमस्ते दोस्त", "नमस्ते"),  # so is the virama
    ("word", "Jose\u0301 here", "Jose\u0301"),  # an accent typed as a mark of its own
    ("email", "write to a@b.xn--p1ai", "a@b.xn--p1ai"),  # a top-level domain in its ASCII form
    ("word", "Ёжик_2", "Ёжик_2"),
    ("word", "?!", None),
    ("word", "", None),
])
def test_extract(kind, text, expected):
    assert extract(kind, text) == expected


@pytest.mark.parametrize("text, pattern, group, expected", [
    ("order 66 now", r"\d+", None, "66"),
    ("order 66 now", r"order (\d+)", None, "66"),                 # first group by default
    ("order 66 now", r"order (\d+)", 0, "order 66"),
    ("Code: AB-12", r"(?P<code>[A-Z]{2}-\d{2})", "code", "AB-12"),  # raw case kept
    ("order 66", r"(x)?(\d+)", 1, None),                          # group did not take part
    ("nothing", r"\d+", None, None),
    ("", r"\d*", None, None),                                     # empty match is no value
])
def test_extract_regex(text, pattern, group, expected):
    assert extract("regex", text, pattern=pattern, group=group) == expected


@pytest.mark.parametrize("kind, kwargs, message", [
    ("date", {}, "unknown capture kind 'date' (expected one of: email, number, regex, text, word)"),
    ("regex", {}, "capture kind 'regex': needs a pattern"),
    ("regex", {"pattern": "(x"},
     "capture pattern: invalid regular expression: missing ) at position 2"),
    ("regex", {"pattern": "(x)", "group": 2}, "capture pattern '(x)': has no group 2"),
    ("regex", {"pattern": "(x)", "group": "name"}, "capture pattern '(x)': has no group 'name'"),
    ("number", {"pattern": r"\d"}, "capture kind 'number': takes no pattern or group"),
])
def test_extract_rejects_bad_arguments(kind, kwargs, message):
    with pytest.raises(ValueError) as caught:
        extract(kind, "x", **kwargs)
    assert str(caught.value) == message


def test_a_text_seen_before_gets_the_same_answer_whatever_was_done_to_the_first(matcher):
    first = matcher.match("Call me Ann-Marie!", "en")
    first.slots["nickname"] = "someone else"  # an action may change turn.intent's slots
    again = matcher.match("Call me Ann-Marie!", "en")
    assert again.slots == {"nickname": "Ann-Marie"} and (again.intent, again.via) == ("name", "pattern")
    matcher.match("hello", "en").slots["extra"] = "x"
    assert matcher.match("hello", "en") == Match("greet", 100.0, "keyword", {})
    assert matcher.match("qwrtzx plmk", "en") is None and matcher.match("qwrtzx plmk", "en") is None
    # Another candidate set or language is asked afresh.
    assert matcher.match("hello", "en", candidates={"password"}) is None
    assert matcher.match("hello", "en", candidates={"greet"}).intent == "greet"


def test_many_different_texts_are_all_answered_as_when_first_seen():
    specs = [IntentSpec("greet", keywords={"en": ["hello"]}),
             IntentSpec("order", patterns={"en": [r"order (?P<count>\d+)"]})]
    remembering, fresh = IntentMatcher(specs), lambda: IntentMatcher(specs)
    texts = [f"order {n}" for n in range(1500)] + ["hello", "hello " * 20, "helo"]
    for _ in range(2):
        for text in texts:
            assert remembering.match(text, "en") == fresh().match(text, "en"), text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["hello", "helo", "what can you do", "call me Ann", "call me Bo", "bye",
                                 "reset pasword", "привет", "", "x"]), min_size=1, max_size=30))
def test_answers_do_not_depend_on_what_was_asked_before(texts):
    specs = [IntentSpec("greet", keywords={"en": ["hello"], "ru": ["привет"]}),
             IntentSpec("bye", keywords={"en": ["bye"]}),
             IntentSpec("help", examples={"en": ["what can you do"]}),
             IntentSpec("password", keywords={"en": ["reset password"]}),
             IntentSpec("name", patterns={"en": [r"call me (?P<nickname>\w+)"]})]
    remembering = IntentMatcher(specs)
    for text in texts:
        assert remembering.match(text, "en") == IntentMatcher(specs).match(text, "en")


@pytest.mark.parametrize("pattern, text, slots", [
    (r"^i am (?P<name>[^0-9]+)(?P<age>\d+)", "I am Ann 25", {"name": "Ann", "age": "25"}),
    (r"^from (?P<city>[a-z ]+)", "from New York, 2020", {"city": "New York"}),
    (r"^call me (?P<name>.+)$", "call me  Ann-Marie ", {"name": "Ann-Marie"}),
])
def test_a_slot_is_the_raw_text_of_its_group_and_no_more(pattern, text, slots):
    matcher = IntentMatcher([IntentSpec("x", patterns={"en": [pattern]})])
    assert matcher.match(text, "en").slots == slots


@pytest.mark.parametrize("pattern, text, slots", [
    (r"^call me (?P<name>.+)$", "call me Ann (the great)", {"name": "Ann (the great)"}),
    (r"^call me (?P<name>.+)$", "call me Ann (the great)!", {"name": "Ann (the great)"}),
    (r"^call me (?P<name>.+?)(?: please)?$", "call me Ann [the 2nd], please", {"name": "Ann [the 2nd]"}),
    (r"^call me (?P<name>.+)$", "call me Ann «Великая»", {"name": "Ann «Великая»"}),
    (r"^call me (?P<name>.+)$", 'call me Ann "the great"', {"name": 'Ann "the great"'}),
    (r"^call me (?P<name>.+)$", "call me (Ann)", {"name": "Ann"}),           # a pair around it: outside
    (r"^call me (?P<name>.+)$", "call me Ann)", {"name": "Ann"}),            # a closer it did not open
    (r"^i am (?P<name>.+) ok$", "i am (the great) Ann, ok", {"name": "(the great) Ann"}),
])
def test_a_slot_keeps_both_halves_of_a_bracket_it_holds(pattern, text, slots):
    matcher = IntentMatcher([IntentSpec("x", patterns={"en": [pattern]})])
    assert matcher.match(text, "en").slots == slots


@pytest.mark.parametrize("text, keyword", [
    ("unregister", "register"), ("deregister", "register"), ("relogin", "login"),
])
def test_a_keyword_with_letters_added_in_front_is_another_word(text, keyword):
    matcher = IntentMatcher([IntentSpec("x", keywords={"en": [keyword]})], threshold=50)
    assert matcher.match(text, "en") is None
    assert matcher.match(keyword[0] + keyword, "en").intent == "x"  # a doubled first letter is a slip


def test_an_example_may_be_one_clause_of_the_text():
    how = IntentSpec("how_are_you", examples={"en": ["how are you"], "ru": ["как дела"]})
    greet = IntentSpec("greet", patterns={"en": ["^(?:hello|hi)$"], "ru": ["^привет$"]})
    matcher = IntentMatcher([greet, how])
    for text in ("Hello, how are you?", "how are you? hi", "привет! как дела?", "Привет — как дела"):
        assert matcher.match(text, "en").intent == "how_are_you", text
    assert matcher.match("hello", "en").intent == "greet"
    assert matcher.match("hello, what a day", "en") is None   # a pattern still takes the whole text
    assert matcher.match("привет как дела", "en") is None     # no punctuation: one clause, 70
