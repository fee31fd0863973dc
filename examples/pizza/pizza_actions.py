"""Actions and conditions of the example pizza bot (see examples/pizza/flows/pizza.yaml).

Load them with `--actions examples/pizza/pizza_actions.py`.  Each function
gets the turn context `ctx` (slots, user, lang, env, say(), set_slot()) and,
when a flow writes `name:arg`, that argument.  They do no I/O: the order
number comes from `ctx.env.now()`, so a replay from the logs gives the same
number.
"""

from __future__ import annotations

from chatbot.dialogs import action, condition

#: Menu size → the word starts it is recognised by, in English and Russian (any case ending).
SIZES = {
    "small": ("small", "маленьк"),
    "medium": ("medium", "средн"),
    "large": ("large", "big", "больш"),
}
PRICES = {"small": 8, "medium": 10, "large": 12}
MAX_PIZZAS = 10


def menu_size(word: str) -> str | None:
    """'Large', 'большую' → 'large'; None when the word names no size on the menu."""
    word = word.casefold()
    for size, starts in SIZES.items():
        if word.startswith(starts):
            return size
    return None


@condition()
def size_on_menu(ctx, arg=None) -> bool:
    return menu_size(str(ctx.slots.get("size", ""))) is not None


def pizza_count(ctx) -> int | None:
    """`count` as a whole number from 1 to MAX_PIZZAS; None for anything else ('2.5', '', 'many')."""
    text = str(ctx.slots.get("count", ""))
    # A few digits at most: int() refuses thousands of them, and no count that long is in range.
    return int(text) if text.isdecimal() and len(text) <= 3 and 1 <= int(text) <= MAX_PIZZAS else None


@condition()
def count_in_range(ctx, arg=None) -> bool:
    """`count` was captured as a number ('3', '2.5'): a whole one from 1 to MAX_PIZZAS."""
    return pizza_count(ctx) is not None


@action(sets=("total",))
def price_order(ctx, arg=None) -> None:
    size = menu_size(str(ctx.slots.get("size", ""))) or "medium"
    ctx.set_slot("total", PRICES[size] * (pizza_count(ctx) or 1))


@action(sets=("order_number",))
def place_order(ctx, arg=None) -> None:
    ctx.set_slot("order_number", f"P-{int(ctx.env.now()) % 100_000:05d}")
