"""Live migration: a client keeps putting, flushing and getting while it
moves to another daemon, and afterwards matches its reference model."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

import tmem
from tmem import corpus
from tmem.testing import daemon_in_thread, wait_for


def _tenant(address: str, ready: object, stop: object, out: object) -> None:
    """Runs in its own process: churns a persistent pool, keeps a model."""
    pages = corpus.pages(256)
    client = tmem.connect(address, name="mover", resume_window=10.0)
    swap = client.new_pool(persistent=True)
    model: dict[tuple[int, int], bytes] = {}
    step = 0
    while not stop.is_set() or step < 400:  # type: ignore[attr-defined]
        handle = (step % 7, step % 97)
        if step % 5 == 4:
            swap.flush_page(*handle)
            model.pop(handle, None)
        else:
            page = pages[step % len(pages)]
            assert swap.put(*handle, page)
            model[handle] = page
        if step % 3 == 0:
            assert swap.get(*handle) == model.get(handle)
        if step == 300:
            ready.set()  # type: ignore[attr-defined]
        step += 1
    bad = [h for h in {(o, i) for o in range(7) for i in range(97)}
           if swap.get(*h) != model.get(h)]
    out.put((step, len(model), bad, client.client_id,  # type: ignore
             str(client.address)))
    client.close()


def test_live_migration_loses_nothing_and_resurrects_nothing(
        sockdir: Path, pages: list[bytes]) -> None:
    with daemon_in_thread(sockdir / "a.sock") as a, \
            daemon_in_thread(sockdir / "b.sock") as b:
        source, target = f"unix:{a.config.socket}", f"unix:{b.config.socket}"
        ctx = multiprocessing.get_context("spawn")
        ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
        tenant = ctx.Process(target=_tenant, args=(source, ready, stop, out))
        tenant.start()
        assert ready.wait(60)

        # a second client on the source with many pages, moved as well
        big = tmem.connect(source, name="big")
        bulk = big.new_pool(persistent=True)
        bulk.put_many([(1, i, p) for i, p in enumerate(pages)])

        with tmem.connect_control(source) as control:
            report = control.migrate("mover", target)
            assert int(str(report["pages"])) > 0
            moved = control.migrate("big", target)
            assert int(str(moved["pages"])) == len(pages)
        # the mover carries on at the target before it stops and checks
        wait_for(lambda: b.host.find_client("mover").stats().ops.puts
                 >= 100, timeout=60)
        stop.set()
        steps, kept, bad, _, address = out.get(timeout=120)
        tenant.join(30)
        assert tenant.exitcode == 0
        assert bad == [] and steps >= 400 and kept > 0
        assert address == target

        assert bulk.get_many([(1, i) for i in range(len(pages))]) == pages
        assert str(big.address) == target
        big.close()
        assert a.host.stats().clients == 0
        b.host.check()


def test_migrating_to_nowhere_or_to_itself_leaves_the_client_in_place(
        sockdir: Path, pages: list[bytes]) -> None:
    with daemon_in_thread(sockdir / "a.sock") as a:
        address = f"unix:{a.config.socket}"
        with tmem.connect(address, name="stay") as client, \
                tmem.connect_control(address) as control:
            swap = client.new_pool(persistent=True)
            swap.put(1, 1, pages[0])
            with pytest.raises(tmem.ServerError, match="cannot connect"):
                control.migrate("stay", f"unix:{sockdir}/none.sock")
            with pytest.raises(tmem.InvalidArgument, match="already on"):
                control.migrate("stay", address)
            assert a.host.stats().clients == 1
            assert swap.get(1, 1) == pages[0]
            swap.put(1, 2, pages[1])
            client.new_pool()  # no longer Busy


def test_migration_that_does_not_fit_is_refused_whole(
        sockdir: Path, pages: list[bytes]) -> None:
    with daemon_in_thread(sockdir / "a.sock") as a, \
            daemon_in_thread(sockdir / "b.sock", capacity=20 * 4096) as b:
        address = f"unix:{a.config.socket}"
        with tmem.connect(address, name="fat") as client, \
                tmem.connect_control(address) as control:
            swap = client.new_pool(persistent=True)
            swap.put_many([(1, i, p) for i, p in enumerate(pages[:100])])
            with pytest.raises(tmem.LimitExceeded, match="nothing was "
                               "restored"):
                control.migrate("fat", f"unix:{b.config.socket}")
            assert swap.get(1, 50) == pages[50]
        assert b.host.stats().clients == 0
