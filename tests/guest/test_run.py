"""Running guests: results, progress, clocks, child processes, and
guests sharing one host."""

from __future__ import annotations

import json
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

import tmem
from tmem import InvalidArgument
from tmem.guest.balloon import SelfBalloon
from tmem.guest.memory import GuestCounters
from tmem.guest.run import GuestConfig, GuestRun, run_guest, run_together
from tmem.guest.traces import TraceSpec
from tmem.guest.workloads import AnonReplay, BlockReplay, Idle

SPRITE = TraceSpec("lirs_sprite.trace.gz", stop=3000)
SIXPACK = TraceSpec("memsim_sixpack.trace.gz", stop=3000)


def _config(**changes: Any) -> GuestConfig:
    settings: dict[str, Any] = {
        "name": "g", "frames": 128, "corpus_pages": 512,
        "workload": (BlockReplay(SPRITE), Idle(10), AnonReplay(SIXPACK))}
    settings.update(changes)
    return GuestConfig(**settings)


def test_a_guest_run_returns_a_json_ready_result() -> None:
    host = tmem.Host(capacity="2MiB")
    result = run_guest(_config(), host.client("g"))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["steps"] == 6010
    assert data["counters"]["cleancache_hits"] > 0
    assert data["config"]["workload"][0]["label"] == \
        "block:lirs_sprite.trace.gz[0:3000]"
    assert data["cleancache"]["gets"] == data["counters"]["cleancache_gets"]
    assert result.counters.stale_pages == 0
    assert host.stats().pages == 0  # the guest left tmem when done
    host.check()


def test_tmem_saves_disk_reads_for_the_same_guest() -> None:
    host = tmem.Host(capacity="2MiB")
    alone = run_guest(_config()).counters
    helped = run_guest(_config(), host.client("g")).counters
    assert helped.disk_sectors_read < alone.disk_sectors_read
    assert helped.blocks_read == alone.blocks_read


def test_progress_is_reported_every_n_steps_and_at_the_end() -> None:
    seen: list[tuple[str, int, GuestCounters]] = []
    run_guest(_config(), progress=lambda *report: seen.append(report),
              every=2500)
    assert [steps for _, steps, _ in seen] == [2500, 5000, 6010]
    assert seen[-1][2].anon_touches == 3000


def test_wall_and_cpu_time_come_from_the_injected_clocks() -> None:
    ticks = iter(range(0, 10_000, 2))
    run = GuestRun(_config(workload=(Idle(10),)), None,
                   clock=lambda: float(next(ticks)), cpu_clock=lambda: 1.0)
    run.step(4)
    run.step(100)
    counters = run.finish().counters
    assert (counters.wall_s, counters.cpu_s) == (4.0, 0.0)


def test_the_balloon_ticks_every_tick_every_steps() -> None:
    config = _config(workload=(BlockReplay(SPRITE),), tick_every=100,
                     balloon=SelfBalloon(reserve=8, floor=40))
    counters = run_guest(config).counters
    assert 0 < counters.balloon_moves <= 30  # 3000 steps, a tick per 100
    assert counters.target_frames_low == 40


def _run_in_child(config: GuestConfig) -> dict[str, Any]:
    host = tmem.Host(capacity="1MiB")
    return run_guest(config, host.client(config.name)).to_dict()


def test_a_config_can_run_in_a_child_process() -> None:
    config = _config(workload=(BlockReplay(SPRITE),))
    assert pickle.loads(pickle.dumps(config)) == config
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        result = pool.submit(_run_in_child, config).result(timeout=60)
    assert result["steps"] == 3000
    assert result["counters"]["cleancache_gets"] > 0


def test_progress_never_repeats_a_count_at_the_end() -> None:
    seen: list[int] = []
    run_guest(_config(workload=(Idle(30),)), every=10,
              progress=lambda _, steps, __: seen.append(steps))
    assert seen == [10, 20, 30]


def test_guests_run_together_share_one_host() -> None:
    host = tmem.Host(capacity="1MiB")
    configs = [_config(name="a", disk_seed=1),
               _config(name="b", disk_seed=2)]
    rounds: list[int] = []
    seen: list[tuple[str, int]] = []
    results = run_together(
        configs, [host.client("a"), host.client("b")], quantum=500,
        before_round=rounds.append, every=2000,
        progress=lambda name, steps, _: seen.append((name, steps)))
    assert [r.name for r in results] == ["a", "b"]
    assert rounds[:3] == [0, 1, 2]
    assert [s for name, s in seen if name == "a"] == [2000, 4000, 6000,
                                                      6010]
    assert all(r.counters.stale_pages == 0 for r in results)
    assert host.stats().pages == 0


def test_run_together_needs_one_client_per_guest() -> None:
    with pytest.raises(InvalidArgument, match="2 guest configs but 1"):
        run_together([_config(), _config()], [None])


def test_a_bad_tick_interval_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="tick_every 0"):
        _config(tick_every=0)
