"""What a caller may name: page handles, pool flags, shared-pool UUIDs,
sizes, client names.

Everything a client passes in is checked here before it touches any data,
because the original's worst hole was trusting guest-supplied ids.

Rules:
- A page is exactly `PAGE_SIZE` (4096) bytes.
- An object id (oid) is an int in [0, 2**192 - 1); all ones is reserved as
  "no object", as in the original ABI.  A 3-tuple of u64 words is accepted
  too, least significant word first: (w0, w1, w2) -> w0 + w1<<64 + w2<<128.
- An index is a u32.
- Pool flags keep the original bit layout: bit 0 persistent, bit 1 shared,
  bit 2 precompressed (refused), bits 4-7 page size as log2(size) - 12 (must
  be 0: 4 KiB), bits 24-31 the ABI version (must be 1), all other bits zero.
- A shared-pool UUID is 128 bits; all ones is refused (the original read it
  as "make the pool private", a silent surprise we do not repeat).
- A client name is 1..255 printable characters: names reach admins'
  terminals and logs, where a newline or an escape sequence would forge
  or hide rows.
- A flag argument (persistent, shared) is a bool, not any truthy value.
- Messages show at most the start of a long bad value (`shown`).
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Iterable
from typing import Any, TypeAlias

from tmem.engine.errors import InvalidArgument

PAGE_SIZE = 4096
OID_BITS = 192
OID_LIMIT = (1 << OID_BITS) - 1  # exclusive: all ones is reserved
INDEX_LIMIT = 1 << 32
U64_LIMIT = 1 << 64

FLAG_PERSISTENT = 1 << 0
FLAG_SHARED = 1 << 1
FLAG_PRECOMPRESSED = 1 << 2
PAGEBITS_SHIFT = 4
PAGEBITS_MASK = 0xF << PAGEBITS_SHIFT
VERSION_SHIFT = 24
ABI_VERSION = 1
FLAGS_KNOWN = (FLAG_PERSISTENT | FLAG_SHARED | FLAG_PRECOMPRESSED
               | PAGEBITS_MASK | (0xFF << VERSION_SHIFT))

OidLike: TypeAlias = int | tuple[int, int, int]
UuidLike: TypeAlias = uuidlib.UUID | bytes | int | str


def check_oid(oid: object) -> int:
    """Return `oid` as an int, or raise InvalidArgument naming the rule."""
    if type(oid) is int and 0 <= oid < OID_LIMIT:
        return oid
    if isinstance(oid, tuple):
        return _oid_from_words(oid)
    if isinstance(oid, bool) or not isinstance(oid, int):
        raise InvalidArgument(
            f"object id {oid!r} must be an int or a 3-tuple of u64")
    raise InvalidArgument(
        f"object id {oid!r} is out of range: it must be in [0, 2**192 - 1)")


def _oid_from_words(words: tuple[object, ...]) -> int:
    if len(words) != 3:
        raise InvalidArgument(
            f"object id {words!r} must have exactly 3 u64 words")
    value = 0
    for shift, word in zip((0, 64, 128), words, strict=True):
        if (type(word) is not int) or not 0 <= word < U64_LIMIT:
            raise InvalidArgument(
                f"object id word {word!r} in {words!r} must be a u64")
        value |= word << shift
    if value == OID_LIMIT:
        raise InvalidArgument(
            f"object id {words!r} is all ones, which is reserved")
    return value


def oid_words(oid: int) -> tuple[int, int, int]:
    """Split an oid into three u64 words, least significant first."""
    mask = U64_LIMIT - 1
    return (oid & mask, (oid >> 64) & mask, oid >> 128)


def check_index(index: object) -> int:
    """Return `index` if it is a u32, else raise InvalidArgument."""
    if type(index) is int and 0 <= index < INDEX_LIMIT:
        return index
    if isinstance(index, bool) or not isinstance(index, int):
        raise InvalidArgument(f"page index {index!r} must be an int")
    raise InvalidArgument(
        f"page index {index!r} is out of range: it must be a u32")


def check_page(page: object) -> bytes:
    """Return the page as bytes of exactly PAGE_SIZE, else raise."""
    if type(page) is bytes:
        if len(page) == PAGE_SIZE:
            return page
    elif isinstance(page, (bytes, bytearray, memoryview)):
        data = bytes(page)
        if len(data) == PAGE_SIZE:
            return data
        page = data
    else:
        raise InvalidArgument(
            f"page must be bytes-like, not {type(page).__name__}")
    raise InvalidArgument(
        f"page length {len(page)} is wrong: a page is {PAGE_SIZE} bytes")


def check_batch(items: Iterable[Any], size: int, shape: str) -> list[Any]:
    """The items of a batch, each checked to be a `size`-tuple."""
    try:
        batch = list(items)
    except TypeError:
        raise InvalidArgument(
            f"a batch must be a sequence of {shape} tuples, not "
            f"{type(items).__name__}") from None
    for n, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) != size:
            raise InvalidArgument(
                f"batch item {n} is {item!r:.60}; it must be a {shape} "
                "tuple")
    return batch


MAX_NAME = 255


def check_name(name: object, what: str = "client name") -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME \
            or not name.isprintable():
        raise InvalidArgument(f"{what} {shown(name)} must be 1..{MAX_NAME} "
                              "printable characters")
    return name


def check_flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{what} {shown(value)} must be True or False")
    return value


def shown(value: object, limit: int = 60) -> str:
    """repr(value), cut to about `limit` characters for a message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def pool_flags(persistent: bool, shared: bool) -> int:
    """Encode pool flags in the original bit layout (4 KiB, version 1)."""
    check_flag(persistent, "persistent")
    check_flag(shared, "shared")
    flags = ABI_VERSION << VERSION_SHIFT
    if persistent:
        flags |= FLAG_PERSISTENT
    if shared:
        flags |= FLAG_SHARED
    return flags


def parse_pool_flags(flags: object) -> tuple[bool, bool]:
    """Decode pool flags into (persistent, shared), refusing anything odd."""
    if type(flags) is not int or not 0 <= flags < 1 << 32:
        raise InvalidArgument(f"pool flags {flags!r} must be a u32")
    if flags & ~FLAGS_KNOWN:
        raise InvalidArgument(
            f"pool flags {flags:#010x} set reserved bits "
            f"{flags & ~FLAGS_KNOWN:#010x}, which must be zero")
    if flags & FLAG_PRECOMPRESSED:
        raise InvalidArgument(
            f"pool flags {flags:#010x} ask for precompressed pages, "
            "which tmem does not support")
    if flags & PAGEBITS_MASK:
        raise InvalidArgument(
            f"pool flags {flags:#010x} ask for a page size other than "
            f"{PAGE_SIZE}")
    version = flags >> VERSION_SHIFT
    if version != ABI_VERSION:
        raise InvalidArgument(
            f"pool flags {flags:#010x} carry ABI version {version}; "
            f"only {ABI_VERSION} is supported")
    return bool(flags & FLAG_PERSISTENT), bool(flags & FLAG_SHARED)


def parse_uuid(value: object) -> uuidlib.UUID:
    """Accept a UUID, 16 bytes, a 128-bit int or a UUID string."""
    try:
        if isinstance(value, uuidlib.UUID):
            result = value
        elif isinstance(value, bytes):
            result = uuidlib.UUID(bytes=value)
        elif isinstance(value, int) and not isinstance(value, bool):
            result = uuidlib.UUID(int=value)
        elif isinstance(value, str):
            result = uuidlib.UUID(value)
        else:
            raise TypeError
    except (ValueError, TypeError):
        raise InvalidArgument(
            f"shared pool uuid {value!r} must be a UUID, 16 bytes, a "
            "128-bit int or a UUID string") from None
    if result.int == (1 << 128) - 1:
        raise InvalidArgument(
            f"shared pool uuid {value!r} is all ones, which is reserved")
    return result


_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kib": 1 << 10, "kb": 10**3,
    "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
    "g": 1 << 30, "gib": 1 << 30, "gb": 10**9,
    "t": 1 << 40, "tib": 1 << 40, "tb": 10**12,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


MAX_SIZE = (1 << 63) - 1
"""The largest size anything takes: what a signed 64-bit count holds."""


def parse_size(value: object, what: str = "size") -> int:
    """Parse "512MiB", "1G", "4096" or an int into bytes.

    K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024; KB/MB/GB/TB are powers
    of 1000.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        nbytes = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value)) \
            and match.group(2).lower() in _UNITS:
        number, unit = float(match.group(1)), _UNITS[match.group(2).lower()]
        if unit == 1 and not number.is_integer():
            raise InvalidArgument(
                f"{what} {value!r} must be a whole number of bytes")
        nbytes = int(min(number * unit, MAX_SIZE + 1))
    else:
        raise _not_a_size(what, value)
    if not 0 <= nbytes <= MAX_SIZE:
        raise InvalidArgument(f"{what} {value!r} must be 0..{MAX_SIZE} "
                              "bytes (8 EiB)")
    return nbytes


def _not_a_size(what: str, value: object) -> InvalidArgument:
    return InvalidArgument(
        f"{what} {value!r} is not a size: use bytes or a number with "
        "K/M/G/T, KiB/MiB/GiB/TiB or KB/MB/GB/TB")


def format_size(nbytes: float) -> str:
    """Render bytes with a binary unit: "512 B", "1.5 MiB"."""
    value = float(nbytes)
    unit = "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
