"""Settings from defaults, a TOML file, the environment and the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.config import Settings, load_settings, settings_table
from chatbot.errors import ConfigError


def test_defaults():
    settings = load_settings({}, environ={})
    assert (settings.host, settings.port) == ("127.0.0.1", 8888)
    assert settings.database_url == "sqlite:///data/chatbot.db"
    assert settings.logs_dir == Path("data/logs")
    assert settings.max_frame_bytes == 65536


def test_later_sources_win(tmp_path):
    config = tmp_path / "chatbot.toml"
    config.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\nrate_limit = 5\n')
    settings = load_settings({"port": "9100"}, config_file=config,
                             environ={"CHATBOT_PORT": "9050", "CHATBOT_RATE_LIMIT": "7.5", "CHATBOT_DEFLATE": "yes"})
    assert settings.port == 9100
    assert settings.host == "0.0.0.0"
    assert settings.rate_limit == 7.5
    assert settings.deflate is True


@pytest.mark.parametrize(
    ("cli", "environ", "message"),
    [
        ({}, {"CHATBOT_PORT": "eighty"}, "CHATBOT_PORT: port: expected int, got 'eighty'"),
        ({"port": "-1"}, {}, "--port: port: must be at least 0, got -1"),
        ({"log_format": "xml"}, {}, "--log-format: log_format: expected one of text, json, none, got 'xml'"),
        ({"deflate": "maybe"}, {}, "--deflate: deflate: expected bool, got 'maybe'"),
        ({"port": "70000"}, {}, "--port: port: must be at most 65535, got 70000"),
        ({"history_limit": "99999999999999999999"}, {},  # it ends up in SQL
         "--history-limit: history_limit: must be at most 1000000, got 99999999999999999999"),
        ({}, {"CHATBOT_RATE_BURST": "99999999999999999999"},
         "CHATBOT_RATE_BURST: rate_burst: must be at most 9223372036854775807, got 99999999999999999999"),
        ({"workers": "100000"}, {}, "--workers: workers: must be at most 256, got 100000"),
        ({"rate_limit": "nan"}, {}, "--rate-limit: rate_limit: expected a finite number, got 'nan'"),
        ({}, {"CHATBOT_SESSION_MAX_AGE": "inf"},
         "CHATBOT_SESSION_MAX_AGE: session_max_age: expected a finite number, got 'inf'"),
    ],
)
def test_bad_values_name_their_source(cli, environ, message):
    with pytest.raises(ConfigError) as error:
        load_settings(cli, environ=environ)
    assert str(error.value) == message


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [")
    with pytest.raises(ConfigError, match=r"bad.toml: invalid TOML"):
        load_settings({}, config_file=bad, environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match=r"unknown.toml: prot: unknown setting"):
        load_settings({}, config_file=unknown, environ={})


def refused_file(tmp_path, toml: str) -> str:
    """What a config file holding `toml` is refused with, after its path."""
    config = tmp_path / "c.toml"
    config.write_text(toml + "\n")
    with pytest.raises(ConfigError) as error:
        load_settings({}, config_file=config, environ={})
    assert str(error.value).startswith(f"{config}: ")
    return str(error.value).removeprefix(f"{config}: ")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("port = true", "port: expected int, got True"),
        ('port = "19106"', "port: expected int, got '19106' (a TOML number is written without quotes)"),
        ('rate_limit = "5"', "rate_limit: expected float, got '5' (a TOML number is written without quotes)"),
        ('deflate = "yes"', "deflate: expected bool, got 'yes' (write true or false)"),
        ('port = ""', "port: expected int, got '' (a TOML number is written without quotes)"),
        ("deflate = 1", "deflate: expected bool, got 1 (write true or false)"),
        ('host = {a = 1}', "host: expected str, got {'a': 1}"),
        ("allowed_origins = [1, 2]", "allowed_origins: expected str, got [1, 2]"),
        ('log_level = ["info"]', "log_level: expected str, got ['info']"),
        ("host = 2024-01-01", "host: expected str, got a date or time"),
        ("rate_limit = nan", "rate_limit: expected a finite number, got nan"),
        ("ping_interval = inf", "ping_interval: expected a finite number, got inf"),
    ],
)
def test_config_file_values_must_have_the_settings_type(tmp_path, toml, message):
    assert refused_file(tmp_path, toml) == message


def test_comma_separated_settings_may_be_arrays_in_the_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[server]\nallowed_origins = ["https://a.example", "https://b.example/"]\n'
                      'actions = ["shop.actions", "extra.py"]\n')
    settings = load_settings({}, config_file=config, environ={})
    assert settings.origins == ("https://a.example", "https://b.example")
    assert settings.action_modules == ("shop.actions", "extra.py")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('server = "x"', "server: expected a table, got a string"),
        ("server = [1]", "server: expected a table, got an array"),
        ("[server]\nport = 9000\n[srever]\nport = 9001", "srever: unknown table (settings go in [server])"),
        ('port = 9001\n[server]\nhost = "0.0.0.0"',
         "port: outside the [server] table (put every setting in [server], or use no table)"),
        ('prot = 9001\n[server]\nhost = "0.0.0.0"', "prot: unknown setting"),
        ("[srever]\nport = 9001", "srever: unknown table (settings go in [server] or at the top level)"),
        ('data-dir = "a"\ndata_dir = "b"', "data_dir: set twice (also as data-dir)"),
        ("[server.sub]\nport = 9001", "server.sub: unknown table (settings go in [server] or at the top level)"),
        ('[server]\ndata-dir = "a"\ndata_dir = "b"', "server.data_dir: set twice (also as server.data-dir)"),
    ],
)
def test_config_file_layout_errors_name_the_file(tmp_path, toml, message):
    assert refused_file(tmp_path, toml) == message


def test_a_config_file_that_is_not_utf8_is_reported(tmp_path):
    config = tmp_path / "latin1.toml"
    config.write_bytes('host = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as error:
        load_settings({}, config_file=config, environ={})
    assert str(error.value) == f"{config}: not UTF-8 text (byte 0xe9 at offset 11)"


def test_a_config_file_starting_with_a_byte_order_mark_is_read(tmp_path):
    config = tmp_path / "notepad.toml"
    config.write_bytes(b"\xef\xbb\xbfport = 33010\n")  # as some editors save UTF-8
    assert load_settings({}, config_file=config, environ={}).port == 33010


def test_an_empty_value_means_the_default(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[server]\nhost = "0.0.0.0"\nlog_level = "debug"\n')
    settings = load_settings({"log_level": ""}, config_file=config,
                             environ={"CHATBOT_HOST": "", "CHATBOT_PORT": "", "CHATBOT_DEFLATE": ""})
    assert (settings.host, settings.port, settings.deflate, settings.log_level) == ("127.0.0.1", 8888, False, "info")
    config.write_text('host = ""\n')
    assert load_settings({}, config_file=config, environ={}).host == "127.0.0.1"


def test_the_documented_table_is_current():
    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    assert settings_table() in doc
    assert all(f"`{name}`" in doc for name in Settings.__dataclass_fields__)
