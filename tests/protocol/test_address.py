"""Addresses: the forms a daemon can be reached at, and the default."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmem import InvalidArgument
from tmem.protocol.address import (
    default_socket,
    parse_address,
    parse_host_port,
)


@pytest.mark.parametrize("text, expected", [
    ("unix:/run/t.sock", "unix:/run/t.sock"),
    ("/run/t.sock", "unix:/run/t.sock"),
    ("tcp:127.0.0.1:7777", "tcp:127.0.0.1:7777"),
    ("tcp:[::1]:7777", "tcp:[::1]:7777"),
])
def test_address_forms(text: str, expected: str) -> None:
    assert str(parse_address(text)) == expected


@given(st.sampled_from(["127.0.0.1", "::1", "fe80::2", "example.org"]),
       st.integers(0, 65535))
def test_a_tcp_address_reads_back_as_itself(host: str, port: int) -> None:
    address = parse_address(f"tcp:{host}:{port}")
    assert (address.host, address.port) == (host, port)
    assert parse_address(str(address)) == address


def test_bad_address_says_which_forms_work() -> None:
    with pytest.raises(InvalidArgument, match="unix:PATH or tcp:HOST:PORT"):
        parse_address("example.org:80")


@pytest.mark.parametrize("text", ["7777", "host:", ":80", "h:65536",
                                  "h:-1", "h:port"])
def test_bad_host_port_names_the_value_and_the_rule(text: str) -> None:
    with pytest.raises(InvalidArgument,
                       match=rf"tcp address '{text}' must be HOST:PORT"):
        parse_host_port(text, "tcp")


def test_default_is_tmem_address_then_runtime_dir_then_tmp(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMEM_ADDRESS", "tcp:10.0.0.1:7777")
    assert str(parse_address(None)) == "tcp:10.0.0.1:7777"

    monkeypatch.delenv("TMEM_ADDRESS")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_socket() == Path("/run/user/1000/tmem/tmem.sock")
    assert str(parse_address(None)) == "unix:/run/user/1000/tmem/tmem.sock"

    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert str(default_socket()).startswith("/tmp/tmem-")
