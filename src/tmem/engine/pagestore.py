"""How one page is kept: raw, compressed, as a same-filled pattern, or shared.

An *entry* is what a pool stores for one handle.  It is one of:
- an `int`: the page repeats one 8-byte pattern (little-endian); 0 is the
  zero page.  No payload is kept;
- `bytes` of exactly PAGE_SIZE: the raw page;
- shorter `bytes`: a compressed payload whose first byte names its codec
  (see codecs.py).

Rules:
- A page that compresses by less than 1/8 of a page is kept raw and
  counted as a poor compression: decompressing it would cost more than the
  bytes it saves.
- Entries are immutable, so a get can hand out a raw entry itself and
  dedup can let many handles share one payload object.
- Dedup works on payloads (after compression): a fast 64-bit hash finds a
  candidate and a full compare confirms it, so a hash collision can only
  cost a missed share, never wrong data.  Identity (`is`) decides whether a
  payload is the shared copy when it is released.
"""

from __future__ import annotations

from typing import TypeAlias

import xxhash

from tmem.engine.codecs import DECOMPRESSORS, Codec
from tmem.engine.handles import PAGE_SIZE

Entry: TypeAlias = bytes | int

POOR_LIMIT = PAGE_SIZE - PAGE_SIZE // 8
"""A compressed payload longer than this is not worth keeping."""

STORED_RAW, STORED_COMPRESSED, STORED_POOR, STORED_SAME = range(4)
"""How `encode` kept a page (POOR: raw after a failed compression)."""

ZERO_PAGE = bytes(PAGE_SIZE)
_PATTERN_REPEAT = PAGE_SIZE // 8


def encode(page: bytes, codec: Codec | None) -> tuple[Entry, int]:
    """Turn a page into an entry; return it and how it was stored."""
    head = page[:8]
    if head == page[-8:] and page == head * _PATTERN_REPEAT:
        return int.from_bytes(head, "little"), STORED_SAME
    if codec is None:
        return page, STORED_RAW
    payload = codec.compress(page)
    if len(payload) > POOR_LIMIT:
        return page, STORED_POOR
    return payload, STORED_COMPRESSED


def decode(entry: Entry) -> bytes:
    """Return the page an entry stands for."""
    if type(entry) is int:
        if entry == 0:
            return ZERO_PAGE
        return entry.to_bytes(8, "little") * _PATTERN_REPEAT
    if len(entry) == PAGE_SIZE:  # type: ignore[arg-type]
        return entry  # type: ignore[return-value]
    return DECOMPRESSORS[entry[0]](entry)  # type: ignore[index,arg-type]


def payload_size(entry: Entry) -> int:
    """Bytes of payload an entry keeps (0 for a same-filled page)."""
    return 0 if type(entry) is int else len(entry)  # type: ignore[arg-type]


class _Shared:
    __slots__ = ("payload", "refs")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.refs = 1


class DedupTable:
    """Payloads shared by identical pages within one dedup group.

    Invariant: every record's `refs` equals the number of entries, across
    all pools of the group, that are that record's payload object.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._records: dict[int, _Shared] = {}
        self.saved_bytes = 0
        """Payload bytes not stored because a copy was shared."""
        self.collisions = 0
        """Payloads not shared: another payload had their hash."""

    def __len__(self) -> int:
        return len(self._records)

    def intern(self, payload: bytes) -> tuple[bytes, bool]:
        """Return the payload to store and whether it was already stored."""
        key = xxhash.xxh3_64_intdigest(payload)
        record = self._records.get(key)
        if record is None:
            self._records[key] = _Shared(payload)
            return payload, False
        if record.payload != payload:
            self.collisions += 1  # keep a private copy
            return payload, False
        record.refs += 1
        self.saved_bytes += len(payload)
        return record.payload, True

    def release(self, payload: bytes) -> bool:
        """Drop one reference; return True if the payload's bytes are freed."""
        key = xxhash.xxh3_64_intdigest(payload)
        record = self._records.get(key)
        if record is None or record.payload is not payload:
            return True  # a private copy (see intern)
        if record.refs == 1:
            del self._records[key]
            return True
        record.refs -= 1
        self.saved_bytes -= len(payload)
        return False

    def references(self) -> dict[int, int]:
        """id(payload) -> refs, for consistency checks."""
        return {id(r.payload): r.refs for r in self._records.values()}
