"""Sessions survive a broken connection for the grace period, and only
their holder of the resume token gets them back."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import tmem
from tmem.testing import (
    FakeClock,
    break_connection,
    call_in_loop,
    daemon_in_thread,
    wait_for,
)


def test_broken_connection_resumes_with_pools_and_ids(
        address: str, pages: list[bytes]) -> None:
    client = tmem.connect(address, name="swap")
    client.new_pool()
    swap = client.new_pool(persistent=True)
    swap.put(1, 1, pages[0])
    session = client.client_id
    break_connection(client)
    assert swap.get(1, 1) == pages[0]  # reconnects and resumes
    assert client.client_id == session
    assert [p.pool_id for p in client.pools()] == [0, 1]
    client.close()


def test_same_name_without_token_gets_a_fresh_session(
        address: str, pages: list[bytes]) -> None:
    first = tmem.connect(address, name="twin")
    first.new_pool(persistent=True).put(1, 1, pages[0])
    second = tmem.connect(address, name="twin")
    assert second.client_id != first.client_id
    assert second.pools() == []
    pool = second.new_pool(persistent=True)
    assert pool.get(1, 1) is None
    first.close()
    second.close()


def test_detached_session_shows_disconnected_then_expires(
        sockdir: Path, pages: list[bytes]) -> None:
    clock = FakeClock()
    with daemon_in_thread(sockdir / "s.sock", grace=60.0,
                          clock=clock) as daemon:
        address = f"unix:{daemon.config.socket}"
        client = tmem.connect(address, name="g", resume_window=0.0)
        client.new_pool(persistent=True).put(1, 1, pages[0])
        control = tmem.connect_control(address)
        break_connection(client)
        wait_for(lambda: not control.snapshot().clients[0].connected)
        assert control.snapshot().host.persistent_content.pages == 1

        clock.advance(61)
        call_in_loop(daemon, daemon.table.expire)
        snap = control.snapshot()
        assert snap.host.clients == 0 and snap.host.used == 0
        with pytest.raises(tmem.ConnectionLost, match="could not be "
                           "resumed"):
            client.pools()
        control.close()


def test_resume_displaces_a_connection_still_thought_alive(
        address: str, pages: list[bytes]) -> None:
    client = tmem.connect(address, name="g")
    pool = client.new_pool(persistent=True)
    pool.put(1, 1, pages[0])
    wire = client._wire
    old = wire._sock
    wire._sock = None  # forget the old socket without closing it
    wire.connect()     # resume on a new connection
    assert pool.get(1, 1) == pages[0]
    assert old is not None and old.recv(1) == b""  # the daemon closed it
    old.close()
    client.close()


def test_stale_socket_file_is_replaced_and_live_one_refused(
        sockdir: Path) -> None:
    path = sockdir / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # leaves the file behind, nobody listening
    with daemon_in_thread(path), \
            pytest.raises(tmem.InvalidArgument, match="in use"), \
            daemon_in_thread(path):
        pass


def test_connecting_to_no_daemon_says_what_to_do(sockdir: Path) -> None:
    with pytest.raises(tmem.ConnectionLost, match="is `tmem serve` "
                       "running"):
        tmem.connect(f"unix:{sockdir}/none.sock")


def test_a_path_that_is_not_a_socket_is_never_replaced(
        sockdir: Path) -> None:
    precious = sockdir / "passwd"
    precious.write_text("root:x:0:0\n")
    with pytest.raises(tmem.InvalidArgument, match="is not a socket"), \
            daemon_in_thread(precious):
        pass
    assert precious.read_text() == "root:x:0:0\n"


def test_a_connection_that_never_says_hello_is_closed(
        sockdir: Path) -> None:
    with daemon_in_thread(sockdir / "h.sock", hello_timeout=0.3) as d:
        idle = socket.socket(socket.AF_UNIX)
        idle.settimeout(5)
        idle.connect(str(d.config.socket))
        assert idle.recv(1) == b""  # closed by the daemon, not by us
        idle.close()
        assert d.connections.hello_timeouts == 1


def test_a_full_daemon_says_why_it_refuses(sockdir: Path) -> None:
    with daemon_in_thread(sockdir / "f.sock", max_connections=1,
                          hello_timeout=5.0) as d:
        address = f"unix:{d.config.socket}"
        first = tmem.connect(address, name="first")
        with pytest.raises(tmem.LimitExceeded, match="max_connections"):
            tmem.connect(address, name="second")
        first.close()
