"""Named actions and conditions that flows refer to.

A flow names Python callables (`after: log_in`, `conditions: has:nickname`);
the registry maps those names to functions.  Built-ins come from
`chatbot.dialogs.builtins`; a bot author adds their own from a module whose
functions are marked with the `action` and `condition` decorators:

    from chatbot.dialogs import action

    @action(sets=("pizza_size",))
    def pick_size(ctx, arg=None):
        ctx.slots["pizza_size"] = ctx.text.strip()

Every callable takes the turn context and, when the flow writes `name:arg`,
that argument.  `@action` without parentheses is the same as `@action()`.
A name is what a flow can write before the colon (letters, digits, `_`), and
`sets` a tuple of slot names; anything else is refused when it is registered.
Callables run synchronously, so an `async def` one (or a generator function)
is refused too, and so is one that cannot be called as `f(ctx)` nor as
`f(ctx, arg)`, and a second callable under a name already taken.
`blocking=True` marks a callable that waits on something (a database, a
password hash): the server runs turns that may call one off its event loop.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Callable

from chatbot.dialogs.loader import NAME_RE, NAME_RULE
from chatbot.errors import ConfigError

MARK = "__chatbot_callable__"
#: The origin of the built-in callables (see Registry.add).
BUILTIN = "chatbot.dialogs.builtins"
#: What importing an author's module may raise.  A module that calls sys.exit() (a script, say)
#: fails too: it must not end the command silently with its own exit status.  KeyboardInterrupt
#: is left alone: it is the user's Ctrl-C.
IMPORT_FAILURES = (Exception, SystemExit)


@dataclass(frozen=True)
class Callback:
    kind: str  # 'action' | 'condition'
    name: str
    func: Callable
    blocking: bool = False
    sets: tuple[str, ...] = ()

    @cached_property
    def takes_arg(self) -> bool:
        """Whether a flow may write `name:arg`: the function can be called as f(ctx, arg)."""
        return _callable_with(self.func, 2)

    @cached_property
    def needs_arg(self) -> bool:
        """Whether a flow must write `name:arg`: the function cannot be called as f(ctx)."""
        return not _callable_with(self.func, 1)


def _callable_with(func: Callable, count: int) -> bool:
    """Whether `func` accepts `count` positional arguments."""
    try:
        inspect.signature(func).bind(*range(count))
    except TypeError:
        return False
    except ValueError:  # no signature to read (some built-in functions): let the call decide
        return True
    return True


def _marker(kind: str, name: str | Callable | None, blocking: bool, sets: tuple[str, ...]):
    if callable(name):  # written bare, `@action`: Python passed the function itself as `name`
        return _marker(kind, None, blocking, sets)(name)

    def mark(func: Callable) -> Callable:
        # `sets="total"` would be the slots t, o, a, l: anything but a collection is kept as written,
        # for Registry.add to refuse; so is any name given, even "" (`name or …` would hide it).
        slots = tuple(sets) if isinstance(sets, (tuple, list, set, frozenset)) else sets
        setattr(func, MARK, Callback(kind, func.__name__ if name is None else name, func, blocking, slots))
        return func
    return mark


def action(name: str | Callable | None = None, *, blocking: bool = False, sets: tuple[str, ...] = ()):
    """Mark a function as a flow action (`before`, `after`, `on_enter`)."""
    return _marker("action", name, blocking, sets)


def condition(name: str | Callable | None = None, *, blocking: bool = False, sets: tuple[str, ...] = ()):
    """Mark a function as a flow condition (`conditions`, `unless`, `capture.validate`)."""
    return _marker("condition", name, blocking, sets)


def split_ref(ref: str) -> tuple[str, str | None]:
    """`has:nickname` → ('has', 'nickname'); `log_in` → ('log_in', None)."""
    name, sep, arg = ref.partition(":")
    return name, (arg if sep else None)


class Registry:
    def __init__(self) -> None:
        self.actions: dict[str, Callback] = {}
        self.conditions: dict[str, Callback] = {}
        #: Where each registered name came from ((kind, name) → the built-ins or a module's spec).
        self._origins: dict[tuple[str, str], str] = {}
        #: The modules loaded so far (resolved file paths and dotted names) and what each registered.
        self._loaded: dict[str, int] = {}

    @classmethod
    def with_builtins(cls) -> "Registry":
        from chatbot.dialogs import builtins

        registry = cls()
        registry.add_module(builtins, origin=BUILTIN)
        return registry

    def add(self, callback: Callback, *, origin: str = "") -> None:
        """Register a callable; `origin` (the built-ins, a module's spec) names it in a clash."""
        _check_form(callback)
        # The engine calls callables without awaiting: a coroutine would never run, and as a
        # condition's answer it is always true.
        func = inspect.unwrap(callback.func)  # an `async def` behind functools.wraps is one too
        if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
            raise ConfigError(f"{callback.kind} {callback.name!r}: is a coroutine function (async def); "
                              "actions and conditions run synchronously (mark slow ones blocking=True)")
        if inspect.isgeneratorfunction(func):  # its body would never run, and a generator is truthy
            raise ConfigError(f"{callback.kind} {callback.name!r}: is a generator function (it uses yield); "
                              "actions and conditions must run to the end when called")
        if callback.needs_arg and not callback.takes_arg:  # e.g. def f() or def f(ctx, a, b)
            raise ConfigError(f"{callback.kind} {callback.name!r}: cannot be called as f(ctx) nor as f(ctx, arg); "
                              f"write it as def {callback.func.__name__}(ctx, arg=None)")
        table = self.actions if callback.kind == "action" else self.conditions
        taken = table.get(callback.name)
        if taken is not None and taken.func is not callback.func:  # the same function imported twice is one
            where = self._origins[callback.kind, callback.name]
            if where == BUILTIN:
                clash = f"is a built-in {callback.kind}"
            elif where == origin:
                clash = f"is taken twice in this module (by {taken.func.__name__} and {callback.func.__name__})"
            else:
                clash = f"is already taken by {where}"
            raise ConfigError(f"{callback.kind} {callback.name!r}: {clash}; choose another name")
        table[callback.name] = callback
        self._origins[callback.kind, callback.name] = origin

    def add_module(self, module: ModuleType, *, origin: str = "") -> int:
        """Register every marked function of a module; return how many."""
        found = [getattr(value, MARK) for value in vars(module).values() if hasattr(value, MARK)]
        for callback in found:
            self.add(callback, origin=origin or module.__name__)
        return len(found)

    def load(self, spec: str) -> int:
        """Register the marked functions of `pkg.module` or `path/to/file.py`.

        A module given twice (`--actions a.py --actions ./a.py`) is loaded once."""
        key = str(Path(spec).resolve()) if _is_path(spec) else spec
        if key in self._loaded:
            return self._loaded[key]
        module = _import(spec)
        try:
            count = self.add_module(module, origin=spec)
        except ConfigError as err:
            raise ConfigError(f"actions: {spec}: {err}") from None
        if count == 0:
            raise ConfigError(f"actions: {spec}: no function marked with @action or @condition")
        self._loaded[key] = count
        return count

    def get(self, kind: str, ref: str) -> tuple[Callback, str | None] | None:
        name, arg = split_ref(ref)
        callback = (self.actions if kind == "action" else self.conditions).get(name)
        return (callback, arg) if callback else None

    def names(self, kind: str) -> list[str]:
        return sorted(self.actions if kind == "action" else self.conditions)


def _check_form(callback: Callback) -> None:
    """Refuse what the decorator's arguments can get wrong: a flow could never call such a name,
    and slot names that are not text break validation (a text `sets` would be iterated letter by letter)."""
    what = f"{callback.kind} {callback.name!r}"
    if not isinstance(callback.name, str):
        raise ConfigError(f"{what}: the name must be text ({NAME_RULE})")
    if not NAME_RE.fullmatch(callback.name):
        raise ConfigError(f"{what}: invalid name ({NAME_RULE}); a flow writes it as `name` or `name:argument`")
    sets = callback.sets
    if not isinstance(sets, tuple) or not all(isinstance(slot, str) and NAME_RE.fullmatch(slot) for slot in sets):
        raise ConfigError(f"{what}: sets={sets!r}: must be a tuple of slot names ({NAME_RULE}), "
                          "e.g. sets=('total',)")
    if not isinstance(callback.blocking, bool):
        raise ConfigError(f"{what}: blocking={callback.blocking!r}: must be True or False")


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec


def _import(spec: str) -> ModuleType:
    if _is_path(spec):
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"actions: {spec}: no such file")
        module_name = f"chatbot_user_actions_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ConfigError(f"actions: {spec}: cannot be imported")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except IMPORT_FAILURES as err:  # an author's module may fail in any way: report, do not crash
            raise _import_failed(spec, err) from err
        return module
    try:
        return importlib.import_module(spec)
    except IMPORT_FAILURES as err:
        raise _import_failed(spec, err) from err


def _import_failed(spec: str, err: BaseException) -> ConfigError:
    return ConfigError(f"actions: {spec}: import failed: {type(err).__name__}: {err}")
