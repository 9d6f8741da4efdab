"""Settings: defaults, TOML, overrides, and refusals that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmem import InvalidArgument
from tmem.server import config as cfg


def test_defaults_need_no_arguments() -> None:
    config = cfg.load(None, {})
    assert config.socket.name == "tmem.sock"
    assert config.socket_mode == 0o600
    assert config.tcp is None
    assert config.capacity > 0
    assert config.compress == "lz4"


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "tmem.toml"
    path.write_text('[serve]\ncapacity = "2GiB"\ncompress = "zstd"\n'
                    'socket_mode = "660"\ngrace = 5\n')
    config = cfg.load(path, {"compress": "none", "capacity": None})
    assert (config.capacity, config.compress) == (2 << 30, "none")
    assert config.socket_mode == 0o660 and config.grace == 5.0


@pytest.mark.parametrize("text, words", [
    ("colour = 1\n", "config key 'colour' is unknown"),
    ('capacity = "lots"\n', "capacity 'lots' is not a size"),
    ('compress = "brotli"\n', "'brotli' is unknown"),
    ('tcp = "0.0.0.0:7777"\n', "needs token_file"),
    ('tcp = "nowhere"\n', "must be HOST:PORT"),
    ("grace = -1\n", "grace"),
    ("[serve\n", "is not TOML"),
    ('dedup = "false"\n', "'dedup' has a bad value 'false': true or false"),
    ("socket_mode = 400\n", "bad value 400: a quoted octal"),
    ('socket_mode = "999"\n', "bad value '999'"),
    ("socket_mode = true\n", "bad value True"),
    ("max_clients = 1.7\n", "bad value 1.7: a whole number"),
    ("max_clients = true\n", "bad value True: a whole number"),
    ("grace = true\n", "bad value True: seconds"),
    ("capacity = 0\n", "capacity 0 is below the minimum"),
    ('capacity = "9999TiB"\n', "more than this machine's memory"),
    ("state = 5\n", "bad value 5: a path"),
    ("grace = 1e308\n", r"grace 1e\+308 must be seconds in 0\.\.2592000"),
    ("hello_timeout = 0\n", r"hello_timeout 0.0 must be seconds in 0\.1"),
])
def test_bad_settings_are_refused_naming_them(tmp_path: Path, text: str,
                                              words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InvalidArgument, match=words):
        cfg.load(path, {})


def test_a_config_file_that_is_not_text_is_named(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00c")
    with pytest.raises(InvalidArgument, match=r"binary\.toml' is not TOML"):
        cfg.load(path, {})


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="cannot be read"):
        cfg.load(tmp_path / "absent.toml", {})


def test_token_files_must_hold_a_real_token(tmp_path: Path) -> None:
    short = tmp_path / "t"
    short.write_text("abc")
    config = cfg.load(None, {"token_file": short})
    with pytest.raises(InvalidArgument, match="has 3 bytes"):
        config.tokens()


def test_token_files_must_be_private_and_distinct(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 32)
    token.chmod(0o644)
    config = cfg.load(None, {"token_file": token})
    with pytest.raises(InvalidArgument, match=r"mode 0644.*chmod 600"):
        config.tokens()
    token.chmod(0o600)
    assert config.tokens() == (b"t" * 32, None)
    config = cfg.load(None, {"token_file": token, "admin_token_file": token})
    with pytest.raises(InvalidArgument, match="every tenant would be"):
        config.tokens()


def test_the_shipped_example_config_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    config = cfg.load(root / "contrib" / "tmem.toml", {})
    assert config.socket_mode == 0o660 and config.state is not None
