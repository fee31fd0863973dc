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


def test_the_documented_table_is_current():
    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    assert settings_table() in doc
    assert all(f"`{name}`" in doc for name in Settings.__dataclass_fields__)
