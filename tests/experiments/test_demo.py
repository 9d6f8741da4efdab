"""Scenarios: checked before anything runs; run end to end in separate
processes against a daemon; bad input and a dying daemon end in one line."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

import tmem
from tmem import cli
from tmem.experiments import demo, runner, scenario
from tmem.testing import daemon_in_thread

TOP = {"name": '"small"', "total_frames": "512", "guest_share": "0.25",
       "quantum": "100"}
GUESTS = """
[[guest]]
name = "a"
workload = "block"
trace = "lirs_sprite.trace.gz"
start = 30000
busy = 3000
idle = 600
phases = 2
[[guest]]
name = "b"
workload = "anon"
trace = "memsim_sixpack.trace.gz"
busy = 600
idle = 600
phases = 2
idle_first = true
"""


def small(**changes: str) -> str:
    """The small scenario's text, with top-level keys changed or added."""
    top = {**TOP, **changes}
    return "".join(f"{k} = {v}\n" for k, v in top.items()) + GUESTS


SMALL = small()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


def test_bundled_demo_scenario_loads_and_pools_memory() -> None:
    s = scenario.load(scenario.demo_path())
    assert len(s.guests) == 4
    assert sum(s.tmem_frames()) * 4096 + s.pool_bytes() == \
        s.total_frames * 4096
    phases = s.guests[1].workload_phases()
    assert phases[0].kind == "idle"  # out of phase with guest 1


@pytest.mark.parametrize("key, value, words", [
    ("colour", '"red"', "key 'colour' is unknown"),
    ("total_frames", '"lots"', "total_frames = 'lots' must be an integer"),
    ("total_frames", "100", "RAM of 50 frames is below the minimum 64"),
    ("guest_share", "1.5", "guest_share 1.5 must be between 0 and 1"),
    ("compress", '"brotli"', r"scenario\.toml: compression 'brotli'"),
])
def test_bad_scenarios_are_refused_in_one_line(tmp_path: Path, key: str,
                                               value: str,
                                               words: str) -> None:
    with pytest.raises(tmem.InvalidArgument, match=words) as info:
        scenario.load(write(tmp_path, small(**{key: value})))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("line, words", [
    ("cap = -5", r"guest 'a': cap = -5 must be in 0\.\.1048576"),
    ("cap = 9223372036854775807", r"cap = 9223372036854775807 must be in"),
    ("weight = 99999999", r"weight = 99999999 must be in 0\.\.1000000"),
    ("phases = 0", r"phases = 0 must be in 1\.\.10000"),
    ("pages = 0", r"pages = 0 must be in 1\.\.1048576"),
    ("pages = 9223372036854775807", "pages = 9223372036854775807 must"),
    ("start = 9223372036854775807", r"start = 9223372036854775807 must"),
    ("idle = 9223372036854775807", r"idle = 9223372036854775807 must"),
    ('format = "bogus"', r"guest 'a': trace format 'bogus' is unknown"),
    ('trace = "/nonexistent.trace"',
     "trace file '/nonexistent.trace' does not exist"),
])
def test_bad_guest_settings_are_refused_before_anything_runs(
        tmp_path: Path, line: str, words: str) -> None:
    first, second = SMALL.split('name = "b"')
    key = line.split()[0]
    first = "\n".join(row for row in first.splitlines()
                      if not row.startswith(f"{key} ="))
    text = first.replace('name = "a"', f'name = "a"\n{line}') + \
        '\nname = "b"' + second
    with pytest.raises(tmem.InvalidArgument, match=words):
        scenario.load(write(tmp_path, text))


def test_missing_trace_and_workload_are_named(tmp_path: Path) -> None:
    with pytest.raises(tmem.InvalidArgument, match=r"no bundled trace "
                       r"named .nope\.csv."):
        scenario.load(write(tmp_path, SMALL.replace(
            "lirs_sprite.trace.gz", "nope.csv")))
    with pytest.raises(tmem.InvalidArgument, match="workload 'disk' must"):
        scenario.load(write(tmp_path, SMALL.replace('"block"', '"disk"')))
    with pytest.raises(tmem.InvalidArgument, match="cannot be read"):
        scenario.load(tmp_path / "absent.toml")


def test_small_scenario_runs_end_to_end_and_writes_results(
        tmp_path: Path) -> None:
    s = scenario.load(write(tmp_path, SMALL))
    out = tmp_path / "out"
    summary = demo.run(s, out)
    document = json.loads((out / "results.json").read_text())
    assert (out / "plot.png").stat().st_size > 10_000
    assert document["summary"]["scenario"] == "small"
    guests = {g["name"]: g for g in summary["guests"]}
    assert guests["a"]["cleancache_hit_ratio"] > 0
    assert guests["b"]["swap_io"]["tmem"] <= guests["b"]["swap_io"]["static"]
    assert all(g["stale_pages"] == 0 for g in summary["guests"])
    assert summary["total"]["sectors_read"]["tmem"] < \
        summary["total"]["sectors_read"]["static"]
    assert document["runs"]["tmem"]["samples"]


def test_a_guest_failing_mid_run_ends_it_with_one_line(
        tmp_path: Path) -> None:
    broken = tmp_path / "msrc_broken.csv"
    lines = (tmem.data.trace_path("msrc_msr-cambridge1-sample.csv")
             .read_text().splitlines())
    broken.write_text("\n".join(lines[:900]))
    text = SMALL.replace('trace = "lirs_sprite.trace.gz"\nstart = 30000',
                         f'trace = "{broken}"').replace(
        "busy = 3000", "busy = 400")  # line 701 is in the second window
    s = scenario.load(write(tmp_path, text))
    # the file breaks after the load checked it: the run must still stop
    broken.write_text("\n".join([*lines[:700], "1,hm,0,Write,oops,2,3"]))
    with pytest.raises(runner.RunFailed, match=r"guest .a. failed:.*oops"):
        runner.run(s, False)


def test_a_daemon_dying_mid_run_ends_it_with_one_line(
        tmp_path: Path) -> None:
    s = scenario.load(write(tmp_path, SMALL.replace(
        "busy = 3000", "busy = 20000")))
    killed = threading.Event()

    def kill_daemon(event: str, details: dict[str, object]) -> None:
        if event == "sample" and not killed.is_set():
            killed.set()
            for pid in _daemon_pids():
                os.kill(pid, signal.SIGKILL)

    with pytest.raises(runner.RunFailed, match=r"daemon (died|stopped)"):
        runner.run(s, True, progress=kill_daemon)


def _daemon_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"tmem-demo-" in command and b"serve" in command:
            pids.append(int(entry))
    return pids


def test_experiment_command_reports_a_missing_daemon(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL)
    result = CliRunner().invoke(cli.main, [
        "experiment", str(path), "--connect", f"unix:{tmp_path}/no.sock",
        "--output", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "is `tmem serve` running?" in result.output
    assert not (tmp_path / "o" / "results.json").exists()


@pytest.mark.parametrize("name", ['""', '"two\\nlines"'])
def test_guest_names_are_client_names(tmp_path: Path, name: str) -> None:
    text = SMALL.replace('name = "a"', f"name = {name}")
    with pytest.raises(tmem.InvalidArgument,
                       match=r"scenario\.toml: guest name .* printable"):
        scenario.load(write(tmp_path, text))


def test_a_schedule_longer_than_its_trace_is_refused(tmp_path: Path) -> None:
    text = SMALL.replace("start = 30000", "start = 99999999")
    with pytest.raises(tmem.InvalidArgument, match="too short for this "
                       "schedule"):
        scenario.load(write(tmp_path, text))


def test_an_output_that_cannot_hold_results_is_refused_first(
        tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    result = CliRunner().invoke(cli.main, [
        "experiment", str(write(tmp_path, SMALL)), "--output", str(taken)])
    assert result.exit_code == 2
    assert result.output == (f"tmem: error: output {str(taken)!r} cannot "
                             "hold the results: File exists\n")


def test_a_daemon_lent_to_an_experiment_gets_its_capacity_back(
        tmp_path: Path) -> None:
    with daemon_in_thread(tmp_path / "s.sock", capacity="64MiB",
                          compress="none") as daemon:
        s = scenario.load(write(tmp_path, small(compress='"zstd"')))
        summary = demo.run(s, tmp_path / "out",
                           address=f"unix:{daemon.config.socket}")
        assert daemon.host.capacity == 64 << 20
    # the scenario's codec, not the daemon's default, packed the pool
    assert summary["pool"]["compression_ratio"] > 1.5


def test_a_daemon_with_clients_or_without_dedup_is_not_lent(
        tmp_path: Path) -> None:
    with daemon_in_thread(tmp_path / "s.sock") as daemon:
        address = f"unix:{daemon.config.socket}"
        deduped = scenario.load(write(tmp_path, small(dedup="true")))
        with pytest.raises(tmem.InvalidArgument, match="sets dedup"):
            demo.run(deduped, tmp_path / "out", address=address)
        with tmem.connect(address, name="tenant"):
            plain = scenario.load(write(tmp_path, SMALL))
            with pytest.raises(tmem.InvalidArgument,
                               match=r"already has clients \(tenant\)"):
                demo.run(plain, tmp_path / "out", address=address)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, words", [
    ({"guest_share": "0.999"}, "a pool needs at least 16"),
    ({"total_frames": "9223372036854775807"}, "must be in 1..1048576"),
])
def test_scenarios_that_leave_no_pool_or_too_much_ram_are_refused(
        tmp_path: Path, change: dict[str, str], words: str) -> None:
    with pytest.raises(tmem.InvalidArgument, match=words):
        scenario.load(write(tmp_path, small(**change)))


def test_guest_frames_beyond_the_total_are_refused(tmp_path: Path) -> None:
    text = SMALL.replace('name = "a"', 'name = "a"\nframes = 5000')
    with pytest.raises(tmem.InvalidArgument, match="add up to 5000, more "
                       "than total_frames 512"):
        scenario.load(write(tmp_path, text))


def test_an_experiment_file_that_is_not_text_is_named(
        tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00guest")
    with pytest.raises(tmem.InvalidArgument, match=r"binary\.toml' is not"):
        scenario.load(path)


def test_a_bad_line_anywhere_in_the_replayed_window_is_refused_at_load(
        tmp_path: Path) -> None:
    trace = tmp_path / "lirs_bad.trace"
    trace.write_text("1\n" * 5000 + "nan\n" + "2\n" * 2000)
    text = SMALL.replace('trace = "lirs_sprite.trace.gz"\nstart = 30000',
                         f'trace = "{trace}"\nstart = 0')
    with pytest.raises(tmem.InvalidArgument,
                       match=r"lirs_bad\.trace line 5001: block 'nan'"):
        scenario.load(write(tmp_path, text))
