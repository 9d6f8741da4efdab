"""Several clients share one daemon with the engine's semantics."""

from __future__ import annotations

import multiprocessing
import socket
import uuid
from pathlib import Path

import pytest

import tmem
from tmem import corpus
from tmem.server.daemon import Daemon
from tmem.testing import call_in_loop, daemon_in_thread


def test_remote_client_has_the_engine_semantics(address: str,
                                                pages: list[bytes]) -> None:
    with tmem.connect(address, name="g") as client:
        cache, swap = client.new_pool(), client.new_pool(persistent=True)
        assert cache.put(1, 1, pages[0]) and swap.put(1, 1, pages[1])
        assert cache.get(1, 1) == pages[0]
        assert cache.get(1, 1) is None  # exclusive
        assert swap.get(1, 1) == swap.get(1, 1) == pages[1]
        assert swap.flush_page(1, 1) and not swap.flush_page(1, 1)
        swap.put_many([(2, i, pages[i]) for i in range(40)])
        assert swap.get_many([(2, i) for i in range(41)]) == [
            *pages[:40], None]
        assert swap.flush_object(2) == 40
        assert [p.pool_id for p in client.pools()] == [0, 1]
        assert client.stats().persistent_ops.puts_stored == 41


def test_pools_are_private_to_their_session(address: str,
                                            pages: list[bytes]) -> None:
    with tmem.connect(address, name="a") as a, \
            tmem.connect(address, name="b") as b:
        pa, pb = a.new_pool(persistent=True), b.new_pool(persistent=True)
        assert pa.pool_id == pb.pool_id == 0
        pa.put(1, 1, pages[0])
        assert pb.get(1, 1) is None
        pb.destroy()
        with pytest.raises(tmem.NoSuchPool):
            pb.put(1, 1, pages[1])
        assert pa.get(1, 1) == pages[0]


def test_shared_pool_needs_a_grant_by_the_admin(address: str,
                                                pages: list[bytes]) -> None:
    u = uuid.uuid4()
    with tmem.connect(address, name="a") as a, \
            tmem.connect(address, name="b") as b:
        sock = a._wire._sock
        with pytest.raises(tmem.PermissionDenied, match="not authorised"):
            a.new_pool(shared=True, uuid=u)
        assert a._wire._sock is sock  # a refusal is not a broken link
        a.control.authorize("a", u)
        a.control.authorize(b.client_id, u)
        sa, sb = a.new_pool(shared=True, uuid=u), b.new_pool(shared=True,
                                                             uuid=u)
        sa.put(3, 3, pages[2])
        assert sb.get(3, 3) == pages[2]
    with tmem.connect(address, name="a") as again:
        assert again.new_pool(shared=True, uuid=u).shared  # grant by name


def test_close_destroys_private_pools_at_once(daemon: Daemon, address: str,
                                              pages: list[bytes]) -> None:
    client = tmem.connect(address, name="g")
    client.new_pool(persistent=True).put(1, 1, pages[0])
    client.close()
    stats = call_in_loop(daemon, daemon.host.stats)
    assert stats.clients == 0 and stats.used == 0


def test_control_needs_an_admin(sockdir: Path, pages: list[bytes]) -> None:
    token = sockdir / "token"
    token.write_text("tenant-token-0123456789")
    token.chmod(0o600)
    admin = sockdir / "admin"
    admin.write_text("admin-token-0123456789")
    admin.chmod(0o600)
    with daemon_in_thread(sockdir / "t.sock", tcp="127.0.0.1:0",
                          token_file=token, admin_token_file=admin) as d:
        port = d.tcp_port
        with pytest.raises(tmem.PermissionDenied, match="no valid token"):
            tmem.connect(f"tcp:127.0.0.1:{port}", token="wrong")
        with tmem.connect(f"tcp:127.0.0.1:{port}", name="t",
                          token=token.read_text()) as tenant:
            assert not tenant.admin
            tenant.new_pool().put(1, 1, pages[0])
            with pytest.raises(tmem.PermissionDenied, match="admin"):
                tenant.control.freeze("t")
        with pytest.raises(tmem.PermissionDenied, match="not an admin"):
            tmem.connect_control(f"tcp:127.0.0.1:{port}",
                                 token=token.read_text())
        control = tmem.connect_control(f"tcp:127.0.0.1:{port}",
                                       token=admin.read_text())
        assert control.snapshot().host.capacity == d.host.capacity
        control.close()


def test_a_resume_token_admits_its_session_over_tcp_without_a_token(
        sockdir: Path, pages: list[bytes]) -> None:
    token = sockdir / "token"
    token.write_text("tenant-token-0123456789")
    token.chmod(0o600)
    with daemon_in_thread(sockdir / "t.sock", tcp="127.0.0.1:0",
                          token_file=token) as d:
        local = tmem.connect(f"unix:{d.config.socket}", name="moved")
        local.new_pool(persistent=True).put(1, 1, pages[0])
        # as a client redirected to TCP by a migration, with no token
        remote = tmem.connect(f"tcp:127.0.0.1:{d.tcp_port}", name="moved",
                              resume=local.resume_token)
        assert remote.pool(0).get(1, 1) == pages[0]
        with pytest.raises(tmem.PermissionDenied, match="no valid token"):
            tmem.connect(f"tcp:127.0.0.1:{d.tcp_port}", name="new")
        remote.close()


def test_control_operations_show_in_the_next_snapshot(
        address: str, pages: list[bytes]) -> None:
    with tmem.connect(address, name="g") as client, \
            tmem.connect_control(address) as control:
        pool = client.new_pool()
        for i in range(20):
            pool.put(1, i, pages[i])
        control.freeze("g")
        control.set_weight(client.client_id, 7)
        control.set_cap("g", "1MiB")
        control.set_compress("g", "zstd")
        (row,) = control.snapshot().clients
        assert (row.frozen, row.weight, row.cap, row.compress) == (
            True, 7, 1 << 20, "zstd")
        assert pool.put(9, 9, pages[0]) is False
        assert control.freeable() > 0
        assert control.flush("1GiB") > 0
        assert control.freeable() == 0
        with pytest.raises(tmem.NoSuchClient, match="no client is named"):
            control.freeze("nobody")
        with pytest.raises(tmem.InvalidArgument, match="weight"):
            control.set_weight("g", -3)


def _worker(address: str, n: int, rounds: int) -> None:
    pages = corpus.pages(64 * (n + 1))[64 * n:]
    with tmem.connect(address, name=f"proc-{n}") as client:
        swap, cache = client.new_pool(persistent=True), client.new_pool()
        for r in range(rounds):
            assert all(swap.put_many([(r, i, p) for i, p in
                                      enumerate(pages)]))
            cache.put_many([(r, i, p) for i, p in enumerate(pages)])
            assert swap.get_many([(r, i) for i in range(64)]) == pages
            for got, page in zip(cache.get_many([(r, i) for i in range(64)]),
                                 pages, strict=True):
                assert got in (None, page)
            assert swap.flush_object(r) == 64


def test_client_processes_share_the_daemon_concurrently(
        daemon: Daemon, address: str) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(address, n, 15))
               for n in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    call_in_loop(daemon, daemon.host.check)


@pytest.mark.parametrize("setting", ["tcp", "metrics"])
def test_an_address_in_use_stops_the_start_and_leaves_no_socket(
        sockdir: Path, setting: str) -> None:
    token = sockdir / "token"
    token.write_text("t" * 32)
    token.chmod(0o600)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(tmem.InvalidArgument,
                           match=f"{setting} address '{address}' cannot be "
                           "served: .*in use"), \
                daemon_in_thread(sockdir / "s.sock", token_file=token,
                                 **{setting: address}):
            pass
    assert not (sockdir / "s.sock").exists()


def test_a_remote_client_takes_pool_flags_too(address: str,
                                              pages: list[bytes]) -> None:
    with tmem.connect(address, name="flags") as client:
        flags = tmem.Host().client("x").new_pool(persistent=True).flags
        pool = client.new_pool_from_flags(flags)
        assert pool.persistent and pool.flags == flags
        with pytest.raises(tmem.InvalidArgument, match="reserved"):
            client.new_pool_from_flags(flags | 1 << 12)


@pytest.mark.parametrize("kwargs, words", [
    ({"name": None}, "client name None must be 1..255 printable"),
    ({"name": "a\nb"}, "printable"),
    ({"token": 5}, "token 5 must be bytes, a string or None"),
])
def test_bad_connect_arguments_are_refused_before_dialling(
        kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(tmem.InvalidArgument, match=words):
        tmem.connect("unix:/nonexistent/t.sock", **kwargs)  # type: ignore


def test_a_new_capacity_follows_the_rules_of_serve(address: str) -> None:
    with tmem.connect_control(address) as control:
        for bad, words in ((0, "below the minimum"),
                           ("1EiB", "not a size"),
                           (1 << 80, "must be 0..")):
            with pytest.raises(tmem.InvalidArgument, match=words):
                control.set_capacity(bad)
        control.set_capacity("1MiB")
        assert control.snapshot().host.capacity == 1 << 20


def test_the_folder_of_a_chosen_socket_is_never_made(sockdir: Path) -> None:
    with pytest.raises(tmem.InvalidArgument, match="does not exist"), \
            daemon_in_thread(sockdir / "typo" / "t.sock"):
        pass
    assert not (sockdir / "typo").exists()
