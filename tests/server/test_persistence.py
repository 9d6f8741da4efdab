"""Persistent pages outlive the daemon: restart with --state, save and
restore on request."""

from __future__ import annotations

import os
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


def test_restart_with_state_loses_no_persistent_page(
        sockdir: Path, pages: list[bytes]) -> None:
    sock, state_file = sockdir / "r.sock", sockdir / "tmem.state"
    with daemon_in_thread(sock, state=state_file, grace=30.0):
        client = tmem.connect(f"unix:{sock}", name="swap",
                              resume_window=10.0)
        client.new_pool()                       # id 0: ephemeral
        swap = client.new_pool(persistent=True)  # id 1
        assert all(swap.put_many([(i // 64, i % 64, p)
                                  for i, p in enumerate(pages)]))
        client.pool(0).put(1, 1, pages[0])
    assert state_file.exists()

    with daemon_in_thread(sock, state=state_file, grace=30.0):
        # the same client object resumes its session transparently
        got = swap.get_many([(i // 64, i % 64) for i in range(len(pages))])
        assert got == pages
        assert [p.pool_id for p in client.pools()] == [0, 1]
        assert client.pool(0).get(1, 1) is None  # ephemeral: not kept
        client.close()


def test_a_handed_over_session_waits_past_the_grace_period(
        sockdir: Path, pages: list[bytes]) -> None:
    sock, state_file = sockdir / "r.sock", sockdir / "tmem.state"
    with daemon_in_thread(sock, state=state_file, grace=5.0):
        client = tmem.connect(f"unix:{sock}", name="idle",
                              resume_window=10.0)
        swap = client.new_pool(persistent=True)
        assert swap.put(1, 1, pages[0])
    clock = FakeClock()
    with daemon_in_thread(sock, state=state_file, grace=5.0,
                          clock=clock) as daemon:
        clock.advance(3600)  # the program sleeps for an hour
        call_in_loop(daemon, daemon.table.expire)
        assert swap.get(1, 1) == pages[0]

        # resumed once, it is an ordinary session again
        (session,) = daemon.table.sessions()
        break_connection(client)
        wait_for(lambda: not session.attached)
        clock.advance(6)
        call_in_loop(daemon, daemon.table.expire)
        assert daemon.host.stats().clients == 0


def test_corrupt_state_file_stops_the_start(sockdir: Path) -> None:
    state_file = sockdir / "bad.state"
    state_file.write_bytes(b"\x89TMEM\r\n\x1a" + bytes(20))
    with pytest.raises(tmem.StreamError, match=r"bad\.state"), \
            daemon_in_thread(sockdir / "c.sock", state=state_file):
        pass
    assert state_file.exists()


def test_save_then_restore_as_another_name(sockdir: Path,
                                           pages: list[bytes]) -> None:
    sock, saved = sockdir / "s.sock", sockdir / "client.tmem"
    with daemon_in_thread(sock) as daemon:
        address = f"unix:{sock}"
        with tmem.connect(address, name="db") as client, \
                tmem.connect_control(address) as control:
            swap = client.new_pool(persistent=True)
            swap.put_many([(7, i, p) for i, p in enumerate(pages[:50])])
            result = control.save("db", saved)
            assert result["pages"] == 50
            (info,) = control.restore(saved, as_name="db-copy")
            assert info["name"] == "db-copy" and info["pages"] == 50
            assert control.drop("db-copy")["pages"] == 50
            assert [c.name for c in control.snapshot().clients] == ["db"]
            (info,) = control.restore(saved, as_name="db-copy")
            copy = tmem.connect(address, name="db-copy",
                                resume=str(info["token"]))
            assert copy.resume_token == info["token"]
            assert copy.pool(0).get_many([(7, i) for i in range(50)]) == \
                pages[:50]
            with pytest.raises(tmem.Busy, match="is connected"):
                control.drop("db-copy")
            copy.close()
            with pytest.raises(tmem.InvalidArgument, match="absolute"):
                control._wire.call(tmem.client.calls.control(
                    tmem.protocol.frames.Op.SAVE, client="db",
                    path="relative.tmem"))
            with pytest.raises(tmem.StreamError, match=r"bad\.tmem'"):
                bad = sockdir / "bad.tmem"
                bad.write_bytes(saved.read_bytes()[:-10])
                control.restore(bad)
        assert daemon.host.stats().clients == 0


def test_a_loaded_state_file_is_removed_so_a_crash_resurrects_nothing(
        sockdir: Path, pages: list[bytes]) -> None:
    sock, state_file = sockdir / "c.sock", sockdir / "tmem.state"
    with daemon_in_thread(sock, state=state_file):
        client = tmem.connect(f"unix:{sock}", name="db")
        client.new_pool(persistent=True).put(5, 0, pages[0])
    assert state_file.exists()
    with daemon_in_thread(sock, state=state_file):
        assert not state_file.exists()  # the pages are in memory again
        assert client.pool(0).get(5, 0) == pages[0]
        client.pool(0).flush_page(5, 0)
        client.close()


def test_a_state_path_that_cannot_be_written_stops_the_start(
        sockdir: Path) -> None:
    with pytest.raises(tmem.InvalidArgument, match="folder does not exist"), \
            daemon_in_thread(sockdir / "d.sock",
                             state=sockdir / "nowhere" / "s.tmem"):
        pass
    with pytest.raises(tmem.InvalidArgument, match="is a directory"), \
            daemon_in_thread(sockdir / "e.sock", state=sockdir):
        pass
    assert not (sockdir / "d.sock").exists()


def test_saved_files_are_private_and_not_overwritten(
        sockdir: Path, pages: list[bytes]) -> None:
    sock, saved = sockdir / "p.sock", sockdir / "db.tmem"
    saved.write_text("important")
    with daemon_in_thread(sock), \
            tmem.connect(f"unix:{sock}", name="db") as client, \
            tmem.connect_control(f"unix:{sock}") as control:
        client.new_pool(persistent=True).put(1, 1, pages[0])
        with pytest.raises(tmem.InvalidArgument, match="--force"):
            control.save("db", saved)
        assert saved.read_text() == "important"
        control.save("db", saved, force=True)
        assert saved.stat().st_mode & 0o777 == 0o600


def test_a_state_that_cannot_be_saved_at_shutdown_is_reported(
        sockdir: Path, pages: list[bytes]) -> None:
    folder = sockdir / "state"
    folder.mkdir()
    with daemon_in_thread(sockdir / "s.sock",
                          state=folder / "tmem.state") as daemon:
        client = tmem.connect(f"unix:{daemon.config.socket}", name="p",
                              resume_window=0.0)
        client.new_pool(persistent=True).put(1, 1, pages[0])
        folder.rmdir()
        assert not daemon.lost_pages
    assert daemon.lost_pages  # and `tmem serve` exits 1
    client._wire._drop()


def test_a_fifo_never_blocks_the_daemon(sockdir: Path,
                                        pages: list[bytes]) -> None:
    fifo = sockdir / "pipe"
    os.mkfifo(fifo)
    with daemon_in_thread(sockdir / "f.sock") as daemon, \
            tmem.connect(f"unix:{daemon.config.socket}", name="db") as c, \
            tmem.connect_control(f"unix:{daemon.config.socket}") as ctl:
        c.new_pool(persistent=True).put(1, 1, pages[0])
        with pytest.raises(tmem.InvalidArgument, match="a FIFO"):
            ctl.restore(fifo)
        with pytest.raises(tmem.InvalidArgument, match="a FIFO"):
            ctl.save("db", fifo, force=True)
        assert c.pool(0).get(1, 1) == pages[0]  # still serving
    with pytest.raises(tmem.InvalidArgument, match="a FIFO"), \
            daemon_in_thread(sockdir / "g.sock", state=fifo):
        pass
