"""Pages come back byte for byte whichever way they were kept."""

from __future__ import annotations

import pytest

from tmem import InvalidArgument
from tmem.engine import codecs, pagestore
from tmem.engine.pagestore import (
    POOR_LIMIT,
    STORED_COMPRESSED,
    STORED_POOR,
    STORED_RAW,
    STORED_SAME,
    DedupTable,
    decode,
    encode,
    payload_size,
)


@pytest.mark.parametrize("name", ["none", "lz4", "zstd", "zstd:5"])
def test_real_pages_round_trip_with_every_codec(name: str,
                                                pages: list[bytes]) -> None:
    codec = codecs.codec_named(name)
    for page in pages:
        entry, _ = encode(page, codec)
        assert decode(entry) == page


def test_compressible_text_is_stored_compressed(pages: list[bytes]) -> None:
    text = next(p for p in pages if p.startswith(b"#") or b"def " in p)
    entry, how = encode(text, codecs.codec_named("lz4"))
    assert how == STORED_COMPRESSED
    assert payload_size(entry) < POOR_LIMIT


def test_poorly_compressing_page_is_kept_raw() -> None:
    # Compressed bytes do not compress again: a zstd frame of real text
    # padded to a page is such a page.
    text = b"".join(_text_pages())
    blob = codecs.codec_named("zstd:19").compress(text)[:4096]  # type: ignore
    assert len(blob) == 4096, "the corpus has too little text"
    entry, how = encode(blob, codecs.codec_named("lz4"))
    assert how == STORED_POOR
    assert entry is blob


def _text_pages() -> list[bytes]:
    from tmem import corpus
    return [p for p in corpus.pages(3000) if b"import" in p]


@pytest.mark.parametrize("pattern", [b"\0" * 8, b"\xff" * 8, b"abcdefgh"])
def test_same_filled_pages_keep_only_their_pattern(pattern: bytes) -> None:
    page = pattern * 512
    entry, how = encode(page, codecs.codec_named("lz4"))
    assert how == STORED_SAME
    assert isinstance(entry, int)
    assert payload_size(entry) == 0
    assert decode(entry) == page


def test_almost_same_filled_page_is_not_mistaken() -> None:
    page = b"\0" * 4095 + b"\1"
    entry, how = encode(page, None)
    assert how == STORED_RAW
    assert decode(entry) == page
    page = b"\1" + b"\0" * 4094 + b"\0"
    entry, how = encode(page, None)
    assert how == STORED_RAW


def test_payload_names_its_codec_so_switching_codecs_is_safe(
        pages: list[bytes]) -> None:
    page = pages[0]
    made_by_lz4, _ = encode(page, codecs.codec_named("lz4"))
    made_by_zstd, _ = encode(page, codecs.codec_named("zstd"))
    assert isinstance(made_by_lz4, bytes) and isinstance(made_by_zstd, bytes)
    assert codecs.codec_of(made_by_lz4).name == "lz4"
    assert codecs.codec_of(made_by_zstd).name == "zstd"
    assert decode(made_by_lz4) == decode(made_by_zstd) == page


def test_unknown_codec_name_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="'brotli' is unknown"):
        codecs.codec_named("brotli")
    with pytest.raises(InvalidArgument, match="zstd:99"):
        codecs.codec_named("zstd:99")


def test_dedup_shares_identical_payloads_and_frees_on_last_release(
        pages: list[bytes]) -> None:
    table = DedupTable("g")
    first = bytes(pages[3])
    second = bytearray(pages[3])
    kept, shared = table.intern(first)
    assert (kept is first, shared) == (True, False)
    kept2, shared2 = table.intern(bytes(second))
    assert kept2 is first and shared2
    assert table.saved_bytes == len(first)
    assert table.release(kept2) is False
    assert table.release(first) is True
    assert len(table) == 0 and table.saved_bytes == 0


def test_dedup_release_of_an_unshared_copy_frees_it(
        pages: list[bytes]) -> None:
    table = DedupTable("g")
    table.intern(pages[0])
    assert table.release(bytes(bytearray(pages[0]))) is True
    assert len(table) == 1


def test_a_hash_collision_keeps_a_private_copy_and_is_counted(
        pages: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pagestore.xxhash, "xxh3_64_intdigest",
                        lambda payload: 42)  # every payload collides
    table = DedupTable("g")
    first, _ = table.intern(pages[0])
    second, shared = table.intern(pages[1])
    assert (second, shared) == (pages[1], False)
    assert table.collisions == 1 and table.saved_bytes == 0
    assert table.release(second)  # a private copy: its bytes are freed
    assert table.references() == {id(first): 1}
