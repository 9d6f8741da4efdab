"""Commands with timeouts and the /proc parsers, on fixed samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmem.swapdev.system import (
    SwapArea,
    SwapError,
    loops_backed_by,
    missing_support,
    parse_meminfo,
    parse_mount_points,
    parse_mounts,
    parse_swaps,
    run,
)

SWAPS = """\
Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority
/dev/loop0                              partition\t1048572\t\t430080\t\t32767
/var/tmp/my\\040swap                     file\t\t262140\t\t0\t\t-2
"""

MEMINFO = """\
MemTotal:       24683836 kB
MemAvailable:   24297916 kB
HugePages_Total:       0
"""

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
95 22 0:40 / /tmp/a\\040b/mnt rw,nosuid,nodev,relatime - fuse.tmem tmem rw
"""


def test_swaps_parse_into_bytes_and_unescaped_names() -> None:
    loop, spaced = parse_swaps(SWAPS)
    assert loop == SwapArea("/dev/loop0", "partition", 1048572 * 1024,
                            430080 * 1024, 32767)
    assert spaced.name == "/var/tmp/my swap"
    assert spaced.priority == -2


def test_meminfo_parses_kilobytes_into_bytes() -> None:
    info = parse_meminfo(MEMINFO)
    assert info["MemAvailable"] == 24297916 * 1024
    assert info["HugePages_Total"] == 0


def test_mount_points_are_unescaped() -> None:
    assert parse_mount_points(MOUNTINFO) == ["/", "/tmp/a b/mnt"]


def test_mounts_carry_their_file_system_type() -> None:
    assert parse_mounts(MOUNTINFO) == [
        ("/", "ext4"), ("/tmp/a b/mnt", "fuse.tmem")]


def test_loop_devices_are_found_by_backing_file(tmp_path: Path) -> None:
    for name, backing in (("loop0", "/mnt/x/swap.img"), ("loop1", "/y"),
                          ("loop3", "/mnt/x/swap.img")):
        (tmp_path / name / "loop").mkdir(parents=True)
        (tmp_path / name / "loop" / "backing_file").write_text(backing + "\n")
    (tmp_path / "vda").mkdir()
    assert loops_backed_by("/mnt/x/swap.img", str(tmp_path)) == [
        "/dev/loop0", "/dev/loop3"]


def test_run_returns_stdout() -> None:
    assert run(["echo", "hi"]) == "hi\n"


def test_failed_command_raises_with_its_status_and_last_line() -> None:
    with pytest.raises(SwapError, match=r"failed with status 3: second"):
        run(["sh", "-c", "echo first >&2; echo second >&2; exit 3"])


def test_overrunning_command_is_killed_and_reported() -> None:
    with pytest.raises(SwapError, match=r"did not finish in 0.2 s"):
        run(["sleep", "5"], timeout=0.2)


def test_missing_command_is_reported() -> None:
    with pytest.raises(SwapError, match="could not start"):
        run(["/nonexistent/tool"])


def test_missing_support_gives_one_line_reasons() -> None:
    for reason in missing_support():
        assert "\n" not in reason and ":" in reason
