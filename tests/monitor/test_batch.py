"""`tmem top -b`: plain-text frames on a schedule, like `top -b`."""

from __future__ import annotations

import io

import tmem
from tmem.engine.stats import Snapshot
from tmem.monitor.batch import run_batch
from tmem.monitor.testing import EmbeddedControl, Traffic
from tmem.testing import FakeClock


def test_prints_n_frames_separated_by_a_blank_line(
        stepped: Traffic, control: EmbeddedControl,
        clock: FakeClock) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        # time passes and traffic flows while batch mode sleeps
        waits.append(seconds)
        stepped.step()
        clock.advance(seconds)

    out = io.StringIO()
    run_batch(control.snapshot, out, interval=2.0, count=3, sleep=sleep)

    assert waits == [2.0, 2.0]
    text = out.getvalue()
    assert "\x1b" not in text
    assert text.count("tmem top: connected") == 3
    assert text.count("\n\ntmem top: ") == 2  # frames after the first
    first, *later = text.split("tmem top: connected")[1:]
    assert "per second: puts -, gets -" in first
    # each round: 3 clients x 32 puts and 16 gets, over 2 seconds
    for frame in later:
        assert "per second: puts 48, gets 24," in frame
    assert text.endswith("\n")


def test_a_lost_daemon_prints_a_disconnected_frame_then_recovers(
        control: EmbeddedControl) -> None:
    answers = iter([True, False, True])

    def source() -> Snapshot:
        if next(answers):
            control.reconnect()
        else:
            control.disconnect()
        return control.snapshot()

    out = io.StringIO()
    assert run_batch(source, out, interval=1.0, count=3,
                     sleep=lambda s: None)
    text = out.getvalue()
    order = [line for line in text.splitlines()
             if line.startswith("tmem top:")]
    assert order == [
        "tmem top: connected, 3 clients, 6 pools (0 shared), sorted by ID",
        "tmem top: disconnected, retrying every 1s",
        "tmem top: connected, 3 clients, 6 pools (0 shared), sorted by ID",
    ]
    assert "last error: daemon 'embedded' is not answering" in text


def test_details_print_every_counter_in_batch_mode(
        control: EmbeddedControl) -> None:
    out = io.StringIO()
    run_batch(control.snapshot, out, interval=1.0, count=1, details=True)
    text = out.getvalue()
    assert text.count("persistent_ops: puts=") == 3
    assert text.count(" content: pages=") == 6
    assert max(len(line) for line in text.splitlines()) <= 80


def test_a_host_without_clients_still_prints_a_frame() -> None:
    out = io.StringIO()
    run_batch(tmem.Host().snapshot, out, interval=1.0, count=1)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("tmem top: connected, 0 clients")
    assert lines[-1].startswith(" ID NAME")
