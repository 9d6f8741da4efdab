"""Trace readers: the bundled real traces, bad input, and fuzzing."""

from __future__ import annotations

import bz2
import gzip
import io
import shutil
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmem import InvalidArgument, data
from tmem.guest import traces
from tmem.guest.traces import Op, Request, TraceSpec

FIRST_RECORDS = {
    "cloudphysics_cloudPhysicsIO.csv":
        Request(5633898.0, Op.WRITE, 42932745 * 512, 512, 0),
    "msprod_MSN-FS-30s-ms":
        Request(0.0, Op.READ, 174224064 * 512, 16 * 512, 5),
    "mqsim_wsrch-small.trace":
        Request(11413000e-9, Op.READ, 657728 * 512, 16 * 512, 0),
    "mqsim_tpcc-small.trace":
        Request(938513000e-9, Op.WRITE, 264719034 * 512, 16 * 512, 4),
    "tencentcbs_cloud_storage-sample.bz2":
        Request(1538323200.0, Op.WRITE, 4247200 * 512, 128 * 512, 1058),
    "msrc_msr-cambridge1-sample.csv":
        Request(128166385295514663e-7, Op.WRITE, 9056014336, 2048, "hm_0"),
    "lirs_sprite.trace.gz": Request(None, Op.READ, 0, 4096, 0),
    "memsim_sixpack.trace.gz": Request(None, Op.WRITE, 0x1F16FF60, 1, 0),
}


@pytest.mark.parametrize("name", sorted(FIRST_RECORDS))
def test_each_bundled_trace_starts_with_its_documented_first_line(
        name: str) -> None:
    first = next(traces.read(data.trace_path(name)))
    expected = FIRST_RECORDS[name]
    assert first._replace(time=None) == expected._replace(time=None)
    if expected.time is not None:
        assert first.time == pytest.approx(expected.time)


def test_small_traces_have_the_documented_record_counts() -> None:
    assert sum(1 for _ in traces.read(
        data.trace_path("msrc_msr-cambridge1-sample.csv"))) == 1000
    tpcc = list(traces.read(data.trace_path("mqsim_tpcc-small.trace")))
    assert len(tpcc) == 6999
    assert sum(r.op is Op.READ for r in tpcc) == 4381


def test_format_is_told_from_the_source_tag_in_the_name() -> None:
    assert traces.format_of("x/msrc_hm_0.csv") == "msr"
    assert traces.format_of("mqsim_foo.trace") == "disksim-ns"
    assert traces.format_of("MSPROD_whatever") == "disksim-ms"
    with pytest.raises(InvalidArgument, match="cannot tell the format"):
        traces.format_of("/tmp/mystery.csv")


def test_an_explicit_format_overrides_the_name(tmp_path: Path) -> None:
    path = tmp_path / "mystery.txt"
    path.write_text("12\n*\n7\n")
    blocks = [r.offset // 4096 for r in traces.read(path, format="lirs")]
    assert blocks == [12, 7]
    with pytest.raises(InvalidArgument, match="format 'csv' is unknown"):
        traces.read(path, format="csv")


def test_a_missing_file_is_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "msrc_gone.csv"
    with pytest.raises(InvalidArgument) as caught:
        traces.read(missing)
    message = str(caught.value)
    assert str(missing) in message and "\n" not in message


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("msrc_a.csv", "1,hm,0,Read,0,512,1\n1,hm,0,Reed,0,512,1\n",
     "line 2: type 'Reed' must be Read or Write"),
    ("msrc_a.csv", "1,hm,0,Read,-5,512,1\n",
     "line 1: offset '-5' must be a non-negative decimal integer"),
    ("mqsim_a.trace", "1 0 5 0 1\n",
     "line 1: sector count '0' must be greater than zero"),
    ("mqsim_a.trace", "1 0 5 1\n", "must have 5 fields, not 4"),
    ("tencent_a.csv", "1,2,3,7,9\n",
     "iotype '7' must be 0 (read) or 1 (write)"),
    ("cloudphysics_a.csv", "version,time,op,size,lbn\n1,5,99,512,7\n",
     "line 2: op '99' must be a SCSI read or write opcode"),
    ("cloudphysics_a.csv", "time,op\n", "line 1: header 'time,op' must be"),
    ("memsim_a.txt", "zz12 R\n", "address 'zz12' must be 1 to 16 hex"),
    ("memsim_a.txt", "12 X\n", "access 'X' must be R or W"),
    ("lirs_a.txt", "1\nnan\n", "line 2: block 'nan' must be"),
    ("mqsim_a.trace", "inf 0 5 1 1\n", "time 'inf' must be a finite"),
    ("lirs_a.txt", "\u00e9\n", "line 1: b'\\xc3\\xa9' is not ASCII text"),
    ("msrc_a.csv", "1,hm,0,Read,4503599627370496,512,1\n",
     "line 1: offset 4503599627370496 + length 512 must end below 2**52"),
])
def test_a_malformed_line_names_file_line_value_and_rule(
        tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidArgument) as caught:
        list(traces.read(path))
    message = str(caught.value)
    assert message.startswith(str(path))
    assert expected in message
    assert "\n" not in message


def test_a_truncated_gzip_stream_is_reported_with_its_line(
        tmp_path: Path) -> None:
    source = data.trace_path("lirs_sprite.trace.gz").read_bytes()
    path = tmp_path / "lirs_cut.trace.gz"
    path.write_bytes(source[:len(source) // 2])
    with pytest.raises(InvalidArgument,
                       match=r"line \d+: the gzip stream is corrupt"):
        list(traces.read(path))


def test_a_corrupt_bzip2_stream_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "tencent_bad.bz2"
    path.write_bytes(b"BZh9 this is not bzip2 data")
    with pytest.raises(InvalidArgument, match="line 1: the bzip2 stream"):
        list(traces.read(path))


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "memsim_x"
    path.write_text("\n10 R\n\n  \n2000 W")
    assert [r.offset for r in traces.read(path)] == [0x10, 0x2000]


def test_a_spec_windows_one_device_of_a_trace() -> None:
    spec = TraceSpec("tencentcbs_cloud_storage-sample.bz2", start=2, stop=5,
                     device=1125)
    window = list(spec.requests())
    everything = [r for r in traces.read(spec.path()) if r.device == 1125]
    assert window == everything[2:5]


def test_a_spec_rejects_an_inverted_window() -> None:
    with pytest.raises(InvalidArgument, match="must have 0 <= start"):
        TraceSpec("lirs_sprite.trace.gz", start=5, stop=2).requests()


def test_a_spec_accepts_a_path_outside_the_bundle(tmp_path: Path) -> None:
    path = tmp_path / "lirs_mine"
    path.write_text("3\n4\n")
    assert len(list(TraceSpec(str(path)).requests())) == 2


def test_data_dir_follows_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "traces").mkdir()
    shutil.copy(data.trace_path("msrc_msr-cambridge1-sample.csv"),
                tmp_path / "traces")
    monkeypatch.setenv("TMEM_DATA", str(tmp_path))
    assert data.data_dir() == tmp_path
    assert data.trace_path("msrc_msr-cambridge1-sample.csv").is_file()
    with pytest.raises(InvalidArgument, match="no bundled trace named"):
        data.trace_path("lirs_sprite.trace.gz")
    monkeypatch.setenv("TMEM_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(InvalidArgument, match="is not a directory"):
        data.data_dir()


# -- fuzzing: anything at all gives Requests or one InvalidArgument -------

def _drain(stream: io.BytesIO, fmt: str, compression: str = "none") -> None:
    try:
        for request in traces.parse(stream, "fuzz", fmt, compression):
            assert request.length >= 1 and request.offset >= 0
    except InvalidArgument as error:
        assert "\n" not in str(error)
        assert str(error).startswith("fuzz line ")


_GOOD_LINES = {
    "cloudphysics": "1,5633898,2a,512,42932745",
    "msr": "128166385295514663,hm,0,Write,9056014336,2048,2833",
    "disksim-ms": "0.221 5 162947904 16 1",
    "disksim-ns": "11565000 1 31244784 64 1",
    "tencent": "1538323199,13896880,128,0,1063",
    "lirs": "7",
    "memsim": "0042bf60 R",
}

_fuzz_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=80)


@settings(max_examples=150, deadline=None)
@given(fmt=st.sampled_from(sorted(traces.FORMATS)),
       lines=st.lists(_fuzz_text, max_size=6))
def test_fuzzed_text_lines_never_crash_a_reader(fmt: str,
                                                lines: list[str]) -> None:
    header = ["version,time,op,size,lbn"] if fmt == "cloudphysics" else []
    text = "\n".join([*header, *lines]).encode("utf-8", "surrogatepass")
    _drain(io.BytesIO(text), fmt)


@settings(max_examples=150, deadline=None)
@given(fmt=st.sampled_from(sorted(traces.FORMATS)),
       cut=st.integers(0, 80), junk=st.text(max_size=6),
       where=st.integers(0, 80))
def test_mutated_valid_lines_never_crash_a_reader(
        fmt: str, cut: int, junk: str, where: int) -> None:
    line = _GOOD_LINES[fmt]
    mutated = line[:where] + junk + line[where + cut:]
    header = "version,time,op,size,lbn\n" if fmt == "cloudphysics" else ""
    text = (header + line + "\n" + mutated + "\n").encode(
        "utf-8", "surrogatepass")
    _drain(io.BytesIO(text), fmt)


@settings(max_examples=100, deadline=None)
@given(fmt=st.sampled_from(sorted(traces.FORMATS)),
       blob=st.binary(max_size=300),
       compression=st.sampled_from(["none", "gzip", "bzip2"]))
def test_garbage_bytes_never_crash_a_reader(fmt: str, blob: bytes,
                                            compression: str) -> None:
    _drain(io.BytesIO(blob), fmt, compression)


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, 400), flip=st.integers(0, 399),
       compression=st.sampled_from(["gzip", "bzip2"]))
def test_damaged_compressed_streams_never_crash_a_reader(
        cut: int, flip: int, compression: str) -> None:
    text = "\n".join(["0042bf60 R"] * 50).encode()
    packed = bytearray(gzip.compress(text) if compression == "gzip"
                       else bz2.compress(text))
    if flip < len(packed):
        packed[flip] ^= 0x5A
    _drain(io.BytesIO(bytes(packed[:cut])), "memsim", compression)


def test_the_first_records_of_a_bundled_trace_can_be_sliced() -> None:
    head = list(islice(traces.read(data.trace_path(
        "memsim_sixpack.trace.gz")), 3))
    assert [r.offset >> 12 for r in head] == [0x1F16F, 0x0042B, 0x2F293]
