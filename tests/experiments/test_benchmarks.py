"""The benchmarks run end to end at tiny sizes and report every target.

These check the harness, not the speed: speed targets live in the
benchmarks' own output, never in tests.
"""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from tmem import cli
from tmem.experiments import bench_engine, bench_server, bench_state


def test_engine_bench_measures_every_codec_and_memory() -> None:
    result = bench_engine.run(pages=3000, repeats=1, progress=False)
    assert [r["compress"] for r in result["throughput"]] == [
        "none", "lz4", "zstd"]
    assert all(r["put_per_s"] > 0 and r["get_per_s"] > 0
               for r in result["throughput"])
    kinds = {(m["compress"], m["kind"]) for m in result["memory"]}
    assert ("zstd", "ephemeral") in kinds and len(kinds) == 6
    assert {t["name"] for t in result["targets"]} >= {
        "gets/s, no compression", "lz4 put / bare compress"}
    assert result["savings"]["lz4"]["ratio"] > 1.2


@pytest.mark.skipif(not (shutil.which("redis-server")
                         and shutil.which("memcached")),
                    reason="redis-server and memcached are not installed "
                    "(scripts/setup.sh installs them as root)")
def test_server_bench_drives_tmem_and_both_peers() -> None:
    result = bench_server.run(clients=2, pages=256, unbatched=64,
                              progress=False)
    systems = {(r["system"], r["workload"]) for r in result["rows"]}
    assert ("redis", "batched") in systems
    assert ("memcached", "unbatched") in systems
    assert result["missing"] == []
    assert len(result["targets"]) == 6


def test_state_bench_migrates_without_a_wrong_page() -> None:
    result = bench_state.run(pages=2048, progress=False)
    assert result["migration"]["pages_wrong_after"] == 0
    assert result["migration"]["client_now_at_target"]
    assert result["save_restore"]["verified_sample"]


def test_engine_bench_json_is_one_object() -> None:
    out = CliRunner().invoke(cli.main, ["bench", "engine", "--pages",
                                        "1000", "--repeats", "1", "--json"])
    assert out.exit_code == 0, out.output
    start = out.output.index("{")
    assert json.loads(out.output[start:])["pages"] == 1000
