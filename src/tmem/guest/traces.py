"""Readers for the real traces guests replay, all yielding one record type.

Every reader turns its file into `Request`s: (time, op, offset, length,
device).  Offsets and lengths are bytes, times are seconds in the trace's
own epoch (None where the trace has no times).  Readers are iterators: a
file is read line by line and never held whole.

Formats (name: what the file holds):
- `cloudphysics`: CSV with the header `version,time,op,size,lbn`; time in
  seconds, op a SCSI opcode in hex (READ/WRITE 6, 10, 12, 16), size in
  bytes, lbn the first 512-byte sector.
- `msr`: MSR Cambridge CSV `timestamp,host,disk,Read|Write,offset,size,
  response`; timestamp in 100 ns Windows ticks, offset and size in bytes;
  the device is "host_disk".
- `disksim-ms`, `disksim-ns`: DiskSim ASCII `time devno sector count
  flags`, time in ms (MSN-FS) or ns (MQSim); flags bit 0 set means read.
- `tencent`: Tencent CBS CSV `timestamp,offset,size,iotype,volume`;
  seconds, 512-byte sectors, iotype 0 read / 1 write.
- `lirs`: one block number per line (a buffer-cache reference, read as a
  4 KiB read); lines of `*` mark checkpoints and are skipped.
- `memsim`: `hexaddress R|W`, one memory reference per line; its page is
  address >> 12.  Length is 1: the access size is not recorded.

Rules:
- The format comes from the file name (the source tag the bundled traces
  carry, e.g. `msrc_...`) unless the caller names one.  Compression comes
  from the suffix: `.gz`, `.bz2`, else none.
- Blank lines are skipped in every format; anything else that breaks the
  format stops the reader with one `InvalidArgument` line naming the file,
  the line number, the value and the rule.  So does a missing file or a
  corrupt or truncated compressed stream.  Nothing else escapes a reader.
- A disk request must end below MAX_END, the end of a guest's disk.
"""

from __future__ import annotations

import bz2
import enum
import gzip
import math
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO, NamedTuple

from tmem import data
from tmem.engine.errors import InvalidArgument

SECTOR = 512
BLOCK = 4096


MAX_END = 1 << 52
"""Where every disk request must end: a guest disk's 2**40 blocks of
4 KiB (memsim addresses are not disk offsets and are not bound by it)."""


class Op(enum.Enum):
    READ = "R"
    WRITE = "W"


class Request(NamedTuple):
    """One trace record: an I/O request or a memory reference.

    A named tuple rather than a frozen dataclass: readers make a million of
    these, and a tuple is built about seven times faster.
    """

    time: float | None
    """Seconds in the trace's epoch, or None if the trace has no times."""
    op: Op
    offset: int
    """Bytes from the start of the device (memsim: the address)."""
    length: int
    """Bytes (at least 1)."""
    device: int | str
    """Device, disk or volume; 0 where the trace has only one."""


class _Bad(Exception):
    """A line broke its format; the reader adds the file and line."""


# -- field parsers --------------------------------------------------------

_DECIMAL = re.compile(r"\d+(\.\d*)?([eE][-+]?\d+)?")


def _uint(text: str, what: str) -> int:
    if text.isascii() and text.isdigit():
        return int(text)
    raise _Bad(f"{what} {text!r} must be a non-negative decimal integer")


def _positive(text: str, what: str) -> int:
    value = _uint(text, what)
    if value == 0:
        raise _Bad(f"{what} {text!r} must be greater than zero")
    return value


def _seconds(text: str, what: str, scale: float) -> float:
    if text.isascii() and _DECIMAL.fullmatch(text):
        value = float(text) * scale
        if math.isfinite(value):
            return value
    raise _Bad(f"{what} {text!r} must be a finite non-negative number")


def _fields(line: str, sep: str | None, count: int) -> list[str]:
    fields = line.split(sep)
    if len(fields) != count:
        raise _Bad(f"line {line[:60]!r} must have {count} fields, "
                   f"not {len(fields)}")
    return [f.strip() for f in fields]


# -- one parser per format: a line -> a Request, or None to skip ----------

_SCSI_OPS = {0x08: Op.READ, 0x28: Op.READ, 0xA8: Op.READ, 0x88: Op.READ,
             0x0A: Op.WRITE, 0x2A: Op.WRITE, 0xAA: Op.WRITE, 0x8A: Op.WRITE}
_CLOUDPHYSICS_HEADER = "version,time,op,size,lbn"


def _cloudphysics(line: str, number: int) -> Request | None:
    if number == 1:
        if line.strip() != _CLOUDPHYSICS_HEADER:
            raise _Bad(f"header {line[:60]!r} must be "
                       f"{_CLOUDPHYSICS_HEADER!r}")
        return None
    version, time, op, size, lbn = _fields(line, ",", 5)
    if version != "1":
        raise _Bad(f"version {version!r} must be 1")
    code = int(op, 16) if re.fullmatch(r"[0-9a-fA-F]{1,2}", op) else -1
    if code not in _SCSI_OPS:
        raise _Bad(f"op {op!r} must be a SCSI read or write opcode in "
                   "hex (28, 2a, ...)")
    return Request(_seconds(time, "time", 1.0), _SCSI_OPS[code],
                   _uint(lbn, "lbn") * SECTOR, _positive(size, "size"), 0)


def _msr(line: str, number: int) -> Request:
    stamp, host, disk, kind, offset, size, response = _fields(line, ",", 7)
    if not host or not host.isascii() or not host.isprintable():
        raise _Bad(f"hostname {host!r} must be printable ASCII text")
    if kind not in ("Read", "Write"):
        raise _Bad(f"type {kind!r} must be Read or Write")
    _uint(response, "response time")
    return Request(_seconds(stamp, "timestamp", 1e-7),
                   Op.READ if kind == "Read" else Op.WRITE,
                   _uint(offset, "offset"), _positive(size, "size"),
                   f"{host}_{_uint(disk, 'disk number')}")


def _disksim(scale: float) -> Callable[[str, int], Request]:
    def parse(line: str, number: int) -> Request:
        time, device, sector, count, flags = _fields(line, None, 5)
        return Request(_seconds(time, "time", scale),
                       Op.READ if _uint(flags, "flags") & 1 else Op.WRITE,
                       _uint(sector, "start sector") * SECTOR,
                       _positive(count, "sector count") * SECTOR,
                       _uint(device, "device number"))
    return parse


# XXX(#4): records come in file order.  Tencent's sample has 144 records
# stamped earlier than the one before; replay ignores times for now, but a
# replayer that paces by time must sort or bucket them first.
def _tencent(line: str, number: int) -> Request:
    stamp, offset, size, kind, volume = _fields(line, ",", 5)
    if kind not in ("0", "1"):
        raise _Bad(f"iotype {kind!r} must be 0 (read) or 1 (write)")
    return Request(_seconds(stamp, "timestamp", 1.0),
                   Op.READ if kind == "0" else Op.WRITE,
                   _uint(offset, "offset") * SECTOR,
                   _positive(size, "size") * SECTOR, _uint(volume, "volume"))


def _lirs(line: str, number: int) -> Request | None:
    text = line.strip()
    if text == "*":
        return None
    return Request(None, Op.READ, _uint(text, "block") * BLOCK, BLOCK, 0)


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_MEMSIM_OPS = {"R": Op.READ, "r": Op.READ, "W": Op.WRITE, "w": Op.WRITE}


def _memsim(line: str, number: int) -> Request:
    # the common case without regexes: a million lines per trace
    fields = line.split()
    if len(fields) == 2:
        address, kind = fields
        op = _MEMSIM_OPS.get(kind)
        if (op is not None and 0 < len(address) <= 16
                and _HEX_DIGITS.issuperset(address)):
            return Request(None, op, int(address, 16), 1, 0)

    # otherwise say which rule the line broke
    address, kind = _fields(line, None, 2)
    if kind not in _MEMSIM_OPS:
        raise _Bad(f"access {kind!r} must be R or W")
    raise _Bad(f"address {address!r} must be 1 to 16 hex digits")


_Parser = Callable[[str, int], Request | None]

FORMATS: dict[str, _Parser] = {
    "cloudphysics": _cloudphysics,
    "msr": _msr,
    "disksim-ms": _disksim(1e-3),
    "disksim-ns": _disksim(1e-9),
    "tencent": _tencent,
    "lirs": _lirs,
    "memsim": _memsim,
}
"""Every format a reader knows, by name."""

_NAME_HINTS = (
    ("cloudphysics", "cloudphysics"), ("msrc_", "msr"),
    ("msr-cambridge", "msr"), ("msprod_", "disksim-ms"),
    ("msn-fs", "disksim-ms"), ("mqsim_", "disksim-ns"),
    ("tencent", "tencent"), ("lirs_", "lirs"), ("memsim_", "memsim"),
)


def format_of(path: str | os.PathLike[str]) -> str:
    """Tell a trace's format from its file name.

    Raises:
        InvalidArgument: the name carries no known source tag.
    """
    name = os.path.basename(os.fspath(path)).lower()
    for hint, fmt in _NAME_HINTS:
        if hint in name:
            return fmt
    raise InvalidArgument(
        f"cannot tell the format of trace {os.fspath(path)!r} from its "
        f"name; pass format= one of {', '.join(FORMATS)}")


# -- reading --------------------------------------------------------------

def read(path: str | os.PathLike[str], format: str | None = None
         ) -> Iterator[Request]:
    """Open a trace file and iterate over its requests.

    Args:
        path: the file; `.gz` and `.bz2` are decompressed on the fly.
        format: one of `FORMATS`, or None to tell it from the name.

    Raises:
        InvalidArgument: unknown format or missing file (at once), or a
            malformed line or corrupt stream (while iterating).
    """
    name = os.fspath(path)
    fmt = format_of(name) if format is None else _check_format(format)
    if not os.path.isfile(name) or not os.access(name, os.R_OK):
        raise InvalidArgument(
            f"trace file {name!r} cannot be read: it is missing, not a "
            "file, or not readable")
    return _read_file(name, fmt)


def _read_file(name: str, fmt: str) -> Iterator[Request]:
    # opened here, not in read(), so an unused reader leaves no file open
    try:
        raw = open(name, "rb")  # noqa: SIM115 - the with below closes it
    except OSError as error:
        raise InvalidArgument(
            f"trace file {name!r} cannot be opened: "
            f"{error.strerror or error}") from None
    with raw:
        yield from parse(raw, name, fmt, _compression_of(name))


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidArgument(
            f"trace format {fmt!r} is unknown; the formats are "
            f"{', '.join(FORMATS)}")
    return fmt


def _compression_of(name: str) -> str:
    lowered = name.lower()
    if lowered.endswith(".gz"):
        return "gzip"
    if lowered.endswith(".bz2"):
        return "bzip2"
    return "none"


def parse(stream: BinaryIO, name: str, format: str,
          compression: str = "none") -> Iterator[Request]:
    """Iterate over the requests in an open binary stream.

    `name` is only used in error messages.  `compression` is "none",
    "gzip" or "bzip2".
    """
    parser = FORMATS[_check_format(format)]
    source: Iterable[bytes]
    if compression == "gzip":
        source = gzip.GzipFile(fileobj=stream)
    elif compression == "bzip2":
        source = bz2.BZ2File(stream)
    elif compression == "none":
        source = stream
    else:
        raise InvalidArgument(
            f"compression {compression!r} must be none, gzip or bzip2")
    end = None if format == "memsim" else MAX_END  # addresses, not disks
    return _parse_lines(_lines(source, name, compression), name, parser,
                        end)


def _lines(stream: Iterable[bytes], name: str, compression: str
           ) -> Iterator[bytes]:
    number = 0
    try:
        for number, line in enumerate(stream, 1):  # noqa: B007
            yield line
    except (OSError, EOFError, zlib.error) as error:
        raise InvalidArgument(
            f"{name} line {number + 1}: the {compression} stream is corrupt "
            f"or truncated ({error})") from None


def _parse_lines(lines: Iterable[bytes], name: str, parser: _Parser,
                 end: int | None) -> Iterator[Request]:
    for number, raw in enumerate(lines, 1):
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            shown = raw.rstrip(b"\r\n")[:60]
            raise InvalidArgument(
                f"{name} line {number}: {shown!r} is not ASCII text"
            ) from None
        if not line.strip():
            continue
        try:
            request = parser(line.rstrip("\r\n"), number)
        except _Bad as bad:
            raise InvalidArgument(f"{name} line {number}: {bad}") from None
        if request is None:
            continue
        if end is not None and request.offset + request.length > end:
            raise InvalidArgument(
                f"{name} line {number}: offset {request.offset} + length "
                f"{request.length} must end below 2**52 bytes (4 PiB)")
        yield request


# -- segments -------------------------------------------------------------

@dataclass(frozen=True)
class TraceSpec:
    """A window of a trace, as plain data (JSON-ready, picklable).

    `name` is a bundled trace's file name or a path.  The window keeps
    only `device`'s requests when one is given, then records
    [start, stop) of those.
    """

    name: str
    format: str | None = None
    start: int = 0
    stop: int | None = None
    device: int | str | None = None

    def path(self) -> Path:
        """The file: a path as given, or a bundled trace by name."""
        if os.sep in self.name or os.path.exists(self.name):
            return Path(self.name)
        return data.trace_path(self.name)

    def requests(self) -> Iterator[Request]:
        """Iterate over the window's requests.

        Raises:
            InvalidArgument: a bad window, format or file, or bad input.
        """
        if self.start < 0 or (self.stop is not None
                              and self.stop < self.start):
            raise InvalidArgument(
                f"trace window [{self.start}, {self.stop}) of {self.name!r}"
                " must have 0 <= start <= stop")
        records = read(self.path(), self.format)
        if self.device is not None:
            wanted = self.device
            records = (r for r in records if r.device == wanted)
        return islice(records, self.start, self.stop)
