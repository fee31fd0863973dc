"""Server settings: one table, read from defaults, a TOML file, the environment and the CLI.

Each setting is declared once below, with its type, default and help; the
`serve` command's options, the `CHATBOT_*` environment variables and the
documentation table are all derived from that declaration.  Later sources
win: defaults < config file < environment < command line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from chatbot.errors import ConfigError

ENV_PREFIX = "CHATBOT_"


#: The largest integer a setting takes unless it says otherwise: what a database's 64-bit integer holds.
LARGEST_INT = 2**63 - 1


def setting(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,
            choices: tuple[str, ...] = (), listed: bool = False):
    """`listed`: a comma-separated text, which a config file may also give as an array of strings."""
    return field(default=default, metadata={"help": help, "minimum": minimum, "maximum": maximum,
                                            "choices": choices, "listed": listed})


@dataclass(frozen=True)
class Settings:
    host: str = setting("127.0.0.1", "Address to listen on.")
    port: int = setting(8888, "Port to listen on (0 picks a free one).", minimum=0, maximum=65535)
    data_dir: str = setting("data", "Folder for runtime data: database, logs, your flows.")
    db: str = setting("", "Database URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
                          "(default: sqlite:///DATA_DIR/chatbot.db).")
    flows: str = setting("", "Folder of your own flows (default: DATA_DIR/flows when it exists).")
    actions: str = setting("", "Comma-separated modules (dotted names or .py files) with your own "
                               "actions and conditions.", listed=True)
    workers: int = setting(1, "Server processes sharing the port (more than 1 needs PostgreSQL).", minimum=1,
                           maximum=256)
    log_dir: str = setting("", "Folder of the JSON log files (default: DATA_DIR/logs).")
    log_max_bytes: int = setting(10 * 1024 * 1024, "Size at which a log file is rotated.", minimum=0)
    log_backups: int = setting(10, "How many rotated log files to keep.", minimum=1)
    log_format: str = setting("text", "Console output: a short line per event, JSON, or nothing.",
                              choices=("text", "json", "none"))
    log_level: str = setting("info", "Lowest level logged.", choices=("debug", "info", "warning", "error"))
    max_frame_bytes: int = setting(64 * 1024, "Largest WebSocket frame accepted; larger ones close with 1009.",
                                   minimum=256)
    max_text_chars: int = setting(4000, "Longest message text accepted (characters).", minimum=1)
    rate_limit: float = setting(10.0, "Frames per second a connection may send on average.", minimum=0.1)
    rate_burst: int = setting(30, "Frames a connection may send at once above the average.", minimum=1)
    rate_strikes: int = setting(10, "Frames refused for the rate limit before the connection is closed "
                                    "with 1008; they are forgiven once the client keeps under the limit "
                                    "until its burst is available again.", minimum=1)
    max_connections: int = setting(20000, "Open WebSocket connections allowed in total (fewer if the open-files "
                                          "limit leaves no room for them).", minimum=1)
    max_connections_per_ip: int = setting(200, "Open WebSocket connections allowed from one address (an "
                                               "IPv6 address counts with its /64).",
                                          minimum=1)
    new_sessions_per_ip: int = setting(60, "New sessions one address (an IPv6 address with its /64) may start "
                                           "per minute (a page that comes back resumes its own); past it the "
                                           "connection is told too_many_sessions and closed with 1013.",
                                       minimum=1)
    allowed_origins: str = setting("", "Comma-separated Origins allowed to open a WebSocket "
                                       "(default: the page's own host; '*' allows any).", listed=True)
    trust_proxy_headers: bool = setting(False, "Take the client's address from X-Real-IP / X-Forwarded-For "
                                               "(only behind a proxy that sets them).")
    ping_interval: float = setting(20.0, "Seconds between WebSocket pings (0 turns them off).", minimum=0)
    ping_timeout: float = setting(20.0, "Seconds without a pong before a connection is dropped (at most "
                                        "ping_interval).", minimum=1)
    deflate: bool = setting(False, "Offer permessage-deflate compression.")
    session_idle_expiry: float = setting(30 * 86400.0, "Seconds of inactivity after which a session expires.",
                                         minimum=60)
    session_max_age: float = setting(365 * 86400.0, "Seconds after creation at which a session expires "
                                                    "whatever its activity.", minimum=60)
    session_evict_after: float = setting(120.0, "Seconds a session without connections stays in memory.",
                                         minimum=0)
    history_limit: int = setting(500, "Conversation entries kept per session.", minimum=10, maximum=1_000_000)
    blocking_threads: int = setting(4, "Threads for blocking work (password hashing, account look-ups).",
                                    minimum=1)
    shutdown_timeout: float = setting(8.0, "Seconds to finish messages in flight when stopping.", minimum=0)

    # --- derived values ---------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        return self.db or f"sqlite:///{Path(self.data_dir) / 'chatbot.db'}"

    @property
    def flows_dir(self) -> Path | None:
        if self.flows:
            return Path(self.flows)
        default = Path(self.data_dir) / "flows"
        return default if default.is_dir() else None

    @property
    def logs_dir(self) -> Path:
        return Path(self.log_dir) if self.log_dir else Path(self.data_dir) / "logs"

    @property
    def action_modules(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.actions.split(",") if part.strip())

    @property
    def origins(self) -> tuple[str, ...]:
        return tuple(part.strip().rstrip("/") for part in self.allowed_origins.split(",") if part.strip())


FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def convert(name: str, value: Any, source: str, *, typed: bool = False) -> Any:
    """A value from a file, the environment or the CLI, checked and of the setting's type.

    `typed`: the value comes from a TOML file, which has numbers and booleans of its own: a
    number or a boolean written as text there is refused, as the documentation says."""
    spec = FIELDS[name]
    kind = spec.type if isinstance(spec.type, type) else {"str": str, "int": int, "float": float,
                                                          "bool": bool}[spec.type]
    where = f"{source}: {name}"
    if isinstance(value, str) and value == "" and not (typed and kind is not str):
        # As for the settings whose default is empty (db, flows...): `CHATBOT_HOST=` must not
        # mean "every interface".
        return spec.default
    if spec.metadata["listed"] and isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    try:
        if kind is bool:
            if isinstance(value, bool):
                result = value
            elif typed:
                raise TypeError
            elif str(value).lower() in ("1", "true", "yes", "on"):
                result = True
            elif str(value).lower() in ("0", "false", "no", "off"):
                result = False
            else:
                raise ValueError
        elif kind is str:
            # str() would turn a TOML array or table into its Python repr.
            if not isinstance(value, str):
                raise TypeError
            result = value
        else:
            # int(True) is 1: a TOML `port = true` is a mistake, not port 1.
            if isinstance(value, bool) or not isinstance(value, (str, int, float)) or (typed and isinstance(value, str)):
                raise TypeError
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            result = kind(value)
    except (TypeError, ValueError):
        # A TOML date or time is named so, not shown as Python writes it (datetime.date(2024, 1, 1)).
        shown = repr(value) if isinstance(value, (str, int, float, list, dict)) else _toml_kind(value)
        hint = ""
        if typed and kind is bool and isinstance(value, (str, int, float)):
            hint = " (write true or false)"
        elif typed and kind in (int, float) and isinstance(value, str):
            hint = " (a TOML number is written without quotes)"
        raise ConfigError(f"{where}: expected {kind.__name__}, got {shown}{hint}") from None
    # NaN compares false with every bound, and no setting means anything by infinity.
    if kind is float and not math.isfinite(result):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    minimum = spec.metadata["minimum"]
    if minimum is not None and result < minimum:
        raise ConfigError(f"{where}: must be at least {_number(minimum)}, got {result!r}")
    maximum = spec.metadata["maximum"]
    if maximum is None and kind is int:
        maximum = LARGEST_INT  # values end up in SQL and in counters of fixed width
    if maximum is not None and result > maximum:
        raise ConfigError(f"{where}: must be at most {_number(maximum)}, got {result!r}")
    choices = spec.metadata["choices"]
    if choices and result not in choices:
        raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {result!r}")
    return result


def load_settings(cli: Mapping[str, Any] | None = None, *, config_file: Path | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_from_file(config_file))
    environ = os.environ if environ is None else environ
    for name in FIELDS:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            values[name] = convert(name, environ[env_name], env_name)
    for name, value in (cli or {}).items():
        if value is not None:
            values[name] = convert(name, value, f"--{name.replace('_', '-')}")
    return Settings(**values)


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark, as some editors write
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                          f"{err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
    if "server" in data:
        section = data["server"]
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: server: expected a table, got {_toml_kind(section)}")
        # Anything next to [server] would otherwise be ignored without a word.
        for key, value in data.items():
            if key == "server":
                continue
            if isinstance(value, dict):
                raise ConfigError(f"{path}: {key}: unknown table (settings go in [server])")
            if key.replace("-", "_") in FIELDS:
                raise ConfigError(f"{path}: {key}: outside the [server] table (put every setting in "
                                  "[server], or use no table)")
            raise ConfigError(f"{path}: {key}: unknown setting")
    else:
        section = data
    within = "server." if section is not data else ""  # keys are named as the file writes them
    values: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for key, value in section.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            if isinstance(value, dict):
                raise ConfigError(f"{path}: {within}{key}: unknown table (settings go in [server] or at the top "
                                  "level)")
            raise ConfigError(f"{path}: {within}{key}: unknown setting")
        if name in keys:
            raise ConfigError(f"{path}: {within}{key}: set twice (also as {within}{keys[name]})")
        keys[name] = key
        values[name] = convert(name, value, str(path), typed=True)
    return values


def _toml_kind(value: Any) -> str:
    kinds = {bool: "a boolean", str: "a string", int: "an integer", float: "a float", list: "an array",
             dict: "a table"}
    return next((text for kind, text in kinds.items() if isinstance(value, kind)), "a date or time")


def settings_table() -> str:
    """The Markdown table of every setting, for docs/configuration.md."""
    rows = ["| setting | command line | environment | default | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, spec in FIELDS.items():
        default = spec.default
        shown = "(see meaning)" if default == "" else f"`{default}`"
        rows.append(f"| `{name}` | `--{name.replace('_', '-')}` | `{ENV_PREFIX}{name.upper()}` | {shown} | "
                    f"{spec.metadata['help']} |")
    return "\n".join(rows) + "\n"
