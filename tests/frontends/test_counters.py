"""Each frontend's live counters are the twins of its snapshot: the same
fields, so a counter added to one is never silently missing from the
other (the snapshot is built from the live fields by name)."""

from __future__ import annotations

import dataclasses

import pytest

from tmem.frontends import cleancache, frontswap


@pytest.mark.parametrize("live, frozen", [
    (cleancache._Counts, cleancache.CleancacheStats),
    (frontswap._Counts, frontswap.FrontswapStats),
])
def test_live_counters_have_exactly_the_snapshot_fields(
        live: type, frozen: type) -> None:
    assert [f.name for f in dataclasses.fields(live)] == \
        [f.name for f in dataclasses.fields(frozen)]
