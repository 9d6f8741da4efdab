"""Fixtures of the experiment tests that need the machine's cgroups."""

from __future__ import annotations

import pytest

from tmem.experiments.memcg import Hierarchy, find_hierarchy


@pytest.fixture
def memcg_v1() -> Hierarchy:
    """The v1 memory hierarchy (per-cgroup swappiness); skip on v2."""
    hierarchy = find_hierarchy()
    assert hierarchy is not None
    if hierarchy.version != 1:
        pytest.skip("cgroup v2 has no per-cgroup swappiness")
    return hierarchy
