"""Memory cgroups: finding the hierarchy, limiting, always removing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tmem.experiments.memcg import (
    Hierarchy,
    MemoryCgroup,
    find_hierarchy,
    parse_hierarchies,
)

HYBRID = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 {unified} cgroup2 rw,relatime 0 0
"""


def test_v1_memory_hierarchy_wins_over_a_v2_without_memory(
        tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("hugetlb\n")
    found = parse_hierarchies(HYBRID.format(unified=tmp_path))
    assert found == [Hierarchy("/sys/fs/cgroup/memory", 1)]
    assert found[0].limit_file == "memory.limit_in_bytes"


def test_v2_hierarchy_with_memory_uses_memory_max(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")
    mounts = f"cgroup2 {tmp_path} cgroup2 rw,nosuid 0 0\n"
    found = parse_hierarchies(mounts)
    assert found == [Hierarchy(str(tmp_path), 2)]
    assert found[0].limit_file == "memory.max"


@pytest.mark.needs_memcg
def test_a_cgroup_is_limited_and_removed_even_with_members_left() -> None:
    cgroup = MemoryCgroup(64 << 20, prefix="tmem-test")
    child = None
    try:
        limit_file = os.path.join(cgroup.path, cgroup.hierarchy.limit_file)
        with open(limit_file) as f:
            assert int(f.read()) == 64 << 20
        child = subprocess.Popen(
            [sys.executable, "-c",
             "import sys, time; from tmem.experiments.memcg import join;"
             " join(sys.argv[1]); print(flush=True); time.sleep(60)",
             cgroup.path], stdout=subprocess.PIPE)
        assert child.stdout is not None
        child.stdout.readline()
        assert cgroup.procs() == [child.pid]
    finally:
        cgroup.remove()
        if child is not None:
            assert child.wait(5) == -9  # killed, not left to sleep
            assert child.stdout is not None
            child.stdout.close()
    assert not os.path.exists(cgroup.path)
    cgroup.remove()  # again: nothing to do


@pytest.mark.needs_memcg
def test_a_cgroup_swaps_as_told_whatever_its_parent_says(
        memcg_v1: Hierarchy) -> None:
    with open(os.path.join(memcg_v1.root, "memory.swappiness")) as f:
        parent = int(f.read())
    mine = 37 if parent != 37 else 38
    with MemoryCgroup(64 << 20, prefix="tmem-test",
                      swappiness=mine) as cgroup:
        with open(os.path.join(cgroup.path, "memory.swappiness")) as f:
            assert int(f.read()) == mine
        assert cgroup.oom_kills() == 0
    assert cgroup.oom_kills() == 0  # removed: nothing to read


@pytest.mark.needs_memcg
def test_making_a_cgroup_removes_those_whose_maker_died() -> None:
    hierarchy = find_hierarchy()
    assert hierarchy is not None
    root = hierarchy.root
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    orphan = os.path.join(root, f"tmem-test-{gone.pid}-0123abcd")
    alive = os.path.join(root, f"tmem-test-{os.getpid()}-0123abcd")
    os.mkdir(orphan)
    os.mkdir(alive)
    member = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from tmem.experiments.memcg import join;"
         " join(sys.argv[1]); print(flush=True); time.sleep(60)",
         orphan], stdout=subprocess.PIPE)
    fresh = None
    try:
        assert member.stdout is not None
        member.stdout.readline()

        fresh = MemoryCgroup(64 << 20, prefix="tmem-test")

        assert not os.path.exists(orphan)
        assert member.wait(5) == -9
        assert os.path.isdir(alive)
    finally:
        for path in (orphan, alive):
            if os.path.isdir(path):
                os.rmdir(path)
        if fresh is not None:
            fresh.remove()
        member.kill()
        member.wait()
        if member.stdout is not None:
            member.stdout.close()
