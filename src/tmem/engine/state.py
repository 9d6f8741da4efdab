"""Saved state: clients, their pools and persistent pages as a byte stream.

A stream carries one or more clients: their settings (weight, cap,
compression, frozen, dedup group, shared-pool grants), their pools (id,
flags, uuid) and every page of their persistent pools, kept as stored
(compressed pages stay compressed).  Ephemeral pages travel only when
asked for.  It is what `tmem save`/`restore`, `serve --state` and live
migration write and read.

Layout (little-endian):

    magic    8 bytes  b"\\x89TMEM\\r\\n\\x1a"
    version  u16      STREAM_VERSION
    flags    u16      reserved, zero
    records  ...      u8 kind, u32 length, body, u32 crc32(kind, length, body)

Record kinds: CLIENT (JSON), POOL (pool id, flags, uuid), PAGES (a batch
of entries of the last POOL), FLUSHES (handles to remove: migration
deltas), END (counts, and a crc32 of every byte before it).

Rules:
- Nothing is applied until the whole stream has been read and checked:
  magic, version, every record's checksum, the END record, the counts,
  every id and every payload (compressed ones are decompressed once to
  prove they are pages).  A truncated, corrupted, foreign or newer stream
  raises StreamError naming what is wrong and where.
- A restore that does not fit (after evicting all ephemeral memory it may)
  is refused whole, before any client is created.
- `StreamReader` is sans-IO: feed it bytes in any pieces.
"""

from __future__ import annotations

import json
import struct
import uuid as uuidlib
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tmem.engine.client import Client
from tmem.engine.codecs import DECOMPRESSORS
from tmem.engine.errors import (
    InvalidArgument,
    LimitExceeded,
    StreamError,
    TmemError,
)
from tmem.engine.handles import (
    INDEX_LIMIT,
    OID_LIMIT,
    PAGE_SIZE,
    check_name,
    parse_pool_flags,
    parse_uuid,
)
from tmem.engine.pagestore import Entry, payload_size
from tmem.engine.pool import PoolContents

if TYPE_CHECKING:
    from tmem.engine.host import Host

MAGIC = b"\x89TMEM\r\n\x1a"
STREAM_VERSION = 1
_HEAD = struct.Struct("<8sHH")
_RECORD = struct.Struct("<BI")
_CRC = struct.Struct("<I")
_POOL = struct.Struct("<II16s")
_BATCH = struct.Struct("<II")
_PAGE = struct.Struct("<QQQIB")  # oid words, index, kind
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_END = struct.Struct("<QQQQI")  # clients, pools, pages, records, crc
MAX_RECORD = 64 << 20

CLIENT, POOL, PAGES, FLUSHES, END = 1, 2, 3, 4, 5
RAW, COMPRESSED, SAME = 0, 1, 2
PAGES_PER_RECORD = 256


@dataclass
class PoolImage:
    """A pool as read from a stream."""

    pool_id: int
    flags: int
    uuid: uuidlib.UUID | None
    pages: list[tuple[int, int, Entry]] = field(default_factory=list)
    flushes: list[tuple[int, int]] = field(default_factory=list)

    @property
    def persistent(self) -> bool:
        return parse_pool_flags(self.flags)[0]


@dataclass
class ClientImage:
    """A client as read from a stream."""

    settings: dict[str, Any]
    pools: list[PoolImage] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.settings["name"])


# -- writing -------------------------------------------------------------------

class StreamWriter:
    """Writes records to `write`, keeping the running checksum and counts."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._crc = 0
        self.clients = self.pools = self.pages = self.records = 0
        self.page_bytes = 0
        self._emit(_HEAD.pack(MAGIC, STREAM_VERSION, 0))

    def _emit(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._write(data)

    def _record(self, kind: int, body: bytes) -> None:
        head = _RECORD.pack(kind, len(body))
        crc = zlib.crc32(body, zlib.crc32(head))
        self._emit(head + body + _CRC.pack(crc))
        self.records += 1

    def client(self, settings: dict[str, Any]) -> None:
        self._record(CLIENT, json.dumps(settings, sort_keys=True).encode())
        self.clients += 1

    def pool(self, pool_id: int, flags: int,
             uuid: uuidlib.UUID | None) -> None:
        raw = bytes(16) if uuid is None else uuid.bytes
        self._record(POOL, _POOL.pack(pool_id, flags, raw))
        self.pools += 1

    def pages_of(self, pool_id: int,
                 entries: Iterator[tuple[int, int, Entry]]) -> None:
        """Write a pool's entries in batches."""
        batch: list[bytes] = []
        for oid, index, entry in entries:
            batch.append(_encode_entry(oid, index, entry))
            self.page_bytes += payload_size(entry)
            if len(batch) == PAGES_PER_RECORD:
                self._pages(pool_id, batch)
                batch = []
        if batch:
            self._pages(pool_id, batch)

    def _pages(self, pool_id: int, batch: list[bytes]) -> None:
        self._record(PAGES, _BATCH.pack(pool_id, len(batch))
                     + b"".join(batch))
        self.pages += len(batch)

    def flushes(self, pool_id: int, handles: list[tuple[int, int]]) -> None:
        body = b"".join(_handle(oid, index) for oid, index in handles)
        self._record(FLUSHES, _BATCH.pack(pool_id, len(handles)) + body)

    def end(self) -> None:
        head = _RECORD.pack(END, _END.size)
        body = _END.pack(self.clients, self.pools, self.pages,
                         self.records, self._crc)
        crc = zlib.crc32(body, zlib.crc32(head))
        self._write(head + body + _CRC.pack(crc))


def _handle(oid: int, index: int) -> bytes:
    mask = (1 << 64) - 1
    return struct.pack("<QQQI", oid & mask, (oid >> 64) & mask, oid >> 128,
                       index)


def _encode_entry(oid: int, index: int, entry: Entry) -> bytes:
    mask = (1 << 64) - 1
    words = (oid & mask, (oid >> 64) & mask, oid >> 128)
    if type(entry) is int:
        return _PAGE.pack(*words, index, SAME) + _U64.pack(entry)
    assert isinstance(entry, bytes)
    if len(entry) == PAGE_SIZE:
        return _PAGE.pack(*words, index, RAW) + entry
    return _PAGE.pack(*words, index, COMPRESSED) + _U32.pack(len(entry)) \
        + entry


def client_settings(client: Client, token: bytes | None = None
                    ) -> dict[str, Any]:
    """A client's settings as the CLIENT record carries them."""
    return {
        "name": client.name, "weight": client.weight, "cap": client.cap,
        "compress": client.compress, "frozen": client.frozen,
        "dedup_group": None if client.dedup is None else client.dedup.name,
        "auth": sorted(str(u) for u in client.auth),
        "token": None if token is None else token.hex(),
        "client_id": client.client_id,
    }


def write_client(writer: StreamWriter, client: Client,
                 ephemeral: bool = False, token: bytes | None = None
                 ) -> None:
    """Write one client (host lock held by the caller)."""
    writer.client(client_settings(client, token))
    for handle in client.slots:
        if handle is None:
            continue
        writer.pool(handle.pool_id, handle.flags, handle.uuid)
        if handle.persistent or ephemeral:
            writer.pages_of(handle.pool_id, iter(handle.pages_sorted()))


# -- reading -------------------------------------------------------------------

class StreamReader:
    """Parses a stream fed in pieces; `finish()` returns what it held."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._crc = 0
        self._header_read = False
        self._offset = 0
        self._records = 0
        self._ended = False
        self.clients: list[ClientImage] = []
        self._pool: PoolImage | None = None
        self._counts = [0, 0, 0]  # clients, pools, pages

    def feed(self, data: bytes) -> None:
        if self._ended and data:
            raise StreamError(
                f"stream has {len(data)} bytes after its END record")
        self._buffer += data
        if not self._header_read:
            self._read_header()
        while self._header_read and not self._ended and self._next():
            pass

    def _read_header(self) -> None:
        if len(self._buffer) < _HEAD.size:
            if not MAGIC.startswith(bytes(self._buffer[:8])):
                raise StreamError("not a tmem state stream (bad magic)")
            return
        magic, version, flags = _HEAD.unpack_from(self._buffer)
        if magic != MAGIC:
            raise StreamError("not a tmem state stream (bad magic)")
        if version != STREAM_VERSION:
            raise StreamError(
                f"stream version {version} is not supported (this tmem "
                f"reads version {STREAM_VERSION})")
        if flags:
            raise StreamError(f"stream flags {flags:#06x} must be zero")
        self._crc = zlib.crc32(self._take(_HEAD.size))
        self._header_read = True

    def _take(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        self._offset += n
        return data

    def _next(self) -> bool:
        if len(self._buffer) < _RECORD.size:
            return False
        kind, length = _RECORD.unpack_from(self._buffer)
        if length > MAX_RECORD:
            raise StreamError(
                f"record at byte {self._offset} claims {length} bytes, "
                f"more than {MAX_RECORD}")
        total = _RECORD.size + length + _CRC.size
        if len(self._buffer) < total:
            return False
        at = self._offset
        data = self._take(total)
        body = data[_RECORD.size:-_CRC.size]
        (crc,) = _CRC.unpack(data[-_CRC.size:])
        if zlib.crc32(data[:-_CRC.size]) != crc:
            raise StreamError(f"record at byte {at} fails its checksum: "
                              "the stream is corrupted")
        try:
            self._apply(kind, body, data)
        except StreamError as error:
            raise StreamError(f"record at byte {at}: {error}") from None
        except (struct.error, ValueError, KeyError, TypeError,
                TmemError) as error:
            raise StreamError(
                f"record at byte {at} (kind {kind}) is malformed: "
                f"{error}") from None
        return True

    def _apply(self, kind: int, body: bytes, data: bytes) -> None:
        if kind == END:
            self._end(body)
            return
        self._crc = zlib.crc32(data, self._crc)
        self._records += 1
        if kind == CLIENT:
            self._client(body)
        elif kind == POOL:
            self._new_pool(body)
        elif kind == PAGES:
            self._pages(body)
        elif kind == FLUSHES:
            self._flushes(body)
        else:
            raise StreamError(f"record kind {kind} is unknown")

    def _client(self, body: bytes) -> None:
        settings = json.loads(body)
        if not isinstance(settings, dict) or not isinstance(
                settings.get("name"), str):
            raise StreamError("CLIENT record lacks a name")
        self.clients.append(ClientImage(settings))
        self._pool = None
        self._counts[0] += 1

    def _current_client(self) -> ClientImage:
        if not self.clients:
            raise StreamError("a POOL record came before any CLIENT")
        return self.clients[-1]

    def _new_pool(self, body: bytes) -> None:
        pool_id, flags, raw = _POOL.unpack(body)
        shared = parse_pool_flags(flags)[1]
        uuid = parse_uuid(raw) if shared else None
        client = self._current_client()
        if any(p.pool_id == pool_id for p in client.pools):
            raise StreamError(f"pool id {pool_id} appears twice")
        self._pool = PoolImage(pool_id, flags, uuid)
        client.pools.append(self._pool)
        self._counts[1] += 1

    def _pool_for(self, pool_id: int) -> PoolImage:
        client = self._current_client()
        for pool in client.pools:
            if pool.pool_id == pool_id:
                return pool
        raise StreamError(f"pages for pool {pool_id}, which has no POOL "
                          "record")

    def _pages(self, body: bytes) -> None:
        pool_id, count = _BATCH.unpack_from(body)
        pool = self._pool_for(pool_id)
        at = _BATCH.size
        for _ in range(count):
            oid, index, entry, at = _decode_entry(body, at)
            pool.pages.append((oid, index, entry))
        if at != len(body):
            raise StreamError(f"PAGES record has {len(body) - at} bytes "
                              "too many")
        self._counts[2] += count

    def _flushes(self, body: bytes) -> None:
        pool_id, count = _BATCH.unpack_from(body)
        pool = self._pool_for(pool_id)
        want = _BATCH.size + count * 28
        if len(body) != want:
            raise StreamError(f"FLUSHES record of {count} handles has "
                              f"{len(body)} bytes, not {want}")
        for w0, w1, w2, index in struct.iter_unpack(
                "<QQQI", body[_BATCH.size:]):
            pool.flushes.append((_oid(w0, w1, w2), index))

    def _end(self, body: bytes) -> None:
        clients, pools, pages, records, crc = _END.unpack(body)
        if crc != self._crc or records != self._records:
            raise StreamError("END record does not match the records "
                              "before it: records are missing or reordered")
        if [clients, pools, pages] != self._counts:
            raise StreamError(
                f"END record counts {clients}/{pools}/{pages} but the "
                f"stream holds {self._counts}")
        self._ended = True

    def finish(self) -> list[ClientImage]:
        """The clients read, once the whole stream has arrived."""
        if not self._header_read:
            raise StreamError("stream is empty or truncated in its header")
        if not self._ended:
            raise StreamError(
                f"stream is truncated: no END record after "
                f"{self._offset + len(self._buffer)} bytes")
        if self._buffer:
            raise StreamError(
                f"stream has {len(self._buffer)} bytes after its END "
                "record: it is not one whole stream")
        return self.clients


def _oid(w0: int, w1: int, w2: int) -> int:
    oid = w0 | (w1 << 64) | (w2 << 128)
    if oid >= OID_LIMIT:
        raise StreamError(f"object id {oid:#x} is reserved")
    return oid


def _decode_entry(body: bytes, at: int) -> tuple[int, int, Entry, int]:
    w0, w1, w2, index, kind = _PAGE.unpack_from(body, at)
    at += _PAGE.size
    oid = _oid(w0, w1, w2)
    if index >= INDEX_LIMIT:
        raise StreamError(f"index {index} is out of range "
                          f"(0..{INDEX_LIMIT - 1})")
    entry: Entry
    if kind == SAME:
        (entry,) = _U64.unpack_from(body, at)
        return oid, index, entry, at + _U64.size
    if kind == RAW:
        entry = body[at:at + PAGE_SIZE]
        if len(entry) != PAGE_SIZE:
            raise StreamError(f"raw page has {len(entry)} bytes, not "
                              f"{PAGE_SIZE}: the record is cut short")
        return oid, index, entry, at + PAGE_SIZE
    if kind != COMPRESSED:
        raise StreamError(f"page kind {kind} is unknown")
    (length,) = _U32.unpack_from(body, at)
    entry = body[at + 4:at + 4 + length]
    _check_payload(entry, length)
    return oid, index, entry, at + 4 + length


def _check_payload(payload: bytes, length: int) -> None:
    if len(payload) != length or not 0 < length < PAGE_SIZE:
        raise StreamError(f"compressed payload of {length} bytes is "
                          "malformed")
    decompress = DECOMPRESSORS.get(payload[0])
    if decompress is None:
        raise StreamError(f"compressed payload names unknown codec "
                          f"{payload[0]:#04x}")
    try:
        page = decompress(payload)
    except Exception:
        raise StreamError("compressed payload does not decompress") \
            from None
    if len(page) != PAGE_SIZE:
        raise StreamError(f"compressed payload decompresses to "
                          f"{len(page)} bytes, not a page")


def read_stream(read: Callable[[int], bytes]) -> list[ClientImage]:
    """Read a whole stream from a file-like `read`."""
    reader = StreamReader()
    while chunk := read(1 << 20):
        reader.feed(chunk)
    return reader.finish()


# -- applying ------------------------------------------------------------------

def bytes_needed(images: list[ClientImage]) -> int:
    """Accounted bytes the images' pages would take (before dedup)."""
    total = 0
    for image in images:
        for pool in image.pools:
            meta = PoolContents.metadata_for(pool.persistent)
            total += sum(meta + payload_size(e) for _, _, e in pool.pages)
    return total


def check_fits(host_free: int, freeable: int,
               images: list[ClientImage]) -> int:
    """Raise LimitExceeded unless the images fit; return bytes needed."""
    needed = bytes_needed(images)
    if needed > host_free + freeable:
        raise LimitExceeded(
            f"restore needs {needed} bytes but the host can offer "
            f"{host_free + freeable} ({host_free} free, {freeable} "
            "freeable): nothing was restored")
    return needed


def apply(host: Host, images: list[ClientImage],
          as_name: str | None = None) -> list[Client]:
    """Create the images' clients, pools and pages (host lock held).

    Every check is made before the first client is created, so a refused
    restore changes nothing.
    """
    if as_name is not None:
        check_name(as_name, "restore name")
        if len(images) != 1:
            raise InvalidArgument(
                f"restoring as {as_name!r} needs a stream of one client, "
                f"not {len(images)}")
    plans = [_plan(host, image, as_name) for image in images]
    _check_limits(host, images)
    free = max(0, host.capacity - host.used)
    needed = check_fits(free, host._freeable(), images)
    if needed > free:
        host.evict(needed - free)
    return [_create(host, image, plan)
            for image, plan in zip(images, plans, strict=True)]


def _plan(host: Host, image: ClientImage, as_name: str | None
          ) -> tuple[Any, ...]:
    s = image.settings
    try:
        checked = host.check_client_settings(
            s.get("name") if as_name is None else as_name,
            s.get("weight", 100), s.get("cap"),
            s.get("compress"))
        auth = {parse_uuid(u) for u in s.get("auth", [])}
    except (InvalidArgument, TypeError) as error:
        raise StreamError(f"client {image.name!r} in the stream has bad "
                          f"settings: {error}") from None
    for pool in image.pools:
        if pool.pool_id >= host.max_pools:
            raise LimitExceeded(
                f"pool id {pool.pool_id} of client {image.name!r} is "
                f"beyond this host's {host.max_pools} pools per client")
    return (*checked, s.get("dedup_group"), bool(s.get("frozen")), auth)


def _check_limits(host: Host, images: list[ClientImage]) -> None:
    if len(host._clients) + len(images) > host.max_clients:
        raise LimitExceeded(
            f"restoring {len(images)} clients would pass max_clients "
            f"({host.max_clients})")
    new_shared = {pool.uuid for image in images for pool in image.pools
                  if pool.uuid is not None and pool.uuid not in host._shared}
    if len(host._shared) + len(new_shared) > host.max_shared_pools:
        raise LimitExceeded(
            f"restoring needs {len(new_shared)} new shared pools; the host "
            f"holds {len(host._shared)} of {host.max_shared_pools}")


def _create(host: Host, image: ClientImage, plan: tuple[Any, ...]
            ) -> Client:
    name, weight, cap, codec, dedup, frozen, auth = plan
    client = host.add_client(name, weight, cap, codec, dedup or False)
    client.auth.update(auth)
    for pool in image.pools:
        persistent, shared = parse_pool_flags(pool.flags)
        handle = client.open_pool(persistent, shared, pool.uuid,
                                  pool_id=pool.pool_id, trusted=True)
        for oid, index, entry in pool.pages:
            handle.restore_page(oid, index, entry)
    client.frozen = frozen
    return client


def apply_delta(host: Host, client: Client, image: ClientImage) -> None:
    """Apply a migration delta (pages to put, handles to flush) to a
    restored client (host lock held); refused whole if it does not fit."""
    handles = [client.find_pool(pool.pool_id) for pool in image.pools]
    free = max(0, host.capacity - host.used)
    needed = check_fits(free, host._freeable(), [image])
    if needed > free:
        host.evict(needed - free)
    for pool, handle in zip(image.pools, handles, strict=True):
        for oid, index, entry in pool.pages:
            handle.restore_page(oid, index, entry)
        for oid, index in pool.flushes:
            handle.restore_flush(oid, index)


__all__ = ["ClientImage", "PoolImage", "StreamReader", "StreamWriter",
           "apply", "apply_delta", "bytes_needed", "check_fits",
           "client_settings", "read_stream", "write_client"]
