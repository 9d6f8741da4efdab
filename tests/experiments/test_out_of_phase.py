"""The headline effect, scaled down: two guests whose working sets rise and
fall out of phase read fewer disk sectors when they pool memory in tmem.

At this scale (512 frames in all, two 2,000-request busy phases of the
Sprite trace, disks drawing on 2,048 corpus pages) the pool saves about
a seventh of the sectors read (34,368 without tmem, 29,424 with it, in
one run).  The full run: python -m tmem.experiments.out_of_phase.
"""

from __future__ import annotations

import json

import pytest

from tmem import InvalidArgument
from tmem.experiments import out_of_phase
from tmem.experiments.out_of_phase import Setup

TINY = Setup(total_frames=512, phase_steps=2000, busy_phases=2,
             corpus_pages=2048)


def test_pooling_memory_in_tmem_reads_fewer_sectors() -> None:
    summary = out_of_phase.run(TINY)
    assert summary["tmem"]["disk_sectors_read"] < \
        summary["static"]["disk_sectors_read"]
    for run in ("static", "tmem"):
        for guest in summary[run]["guests"]:
            assert guest["counters"]["stale_pages"] == 0
    json.dumps(summary)
    assert "fewer than static" in out_of_phase.render(summary)


def test_the_command_line_prints_a_summary(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert out_of_phase.main(["--total-frames", "256", "--phase-steps",
                              "500", "--busy-phases", "1"]) == 0
    assert "sectors read with tmem" in capsys.readouterr().out


def test_phases_must_line_up_with_turns() -> None:
    with pytest.raises(InvalidArgument, match="phase_steps 75"):
        Setup(phase_steps=75)
