"""Everything a caller names is checked, with a message naming the rule."""

from __future__ import annotations

import uuid

import pytest

import tmem
from tmem import InvalidArgument
from tmem.engine import handles as h


def test_oid_accepts_ints_and_three_words() -> None:
    assert h.check_oid(0) == 0
    assert h.check_oid(2**192 - 2) == 2**192 - 2
    assert h.check_oid((1, 2, 3)) == 1 + (2 << 64) + (3 << 128)
    assert h.oid_words(h.check_oid((1, 2, 3))) == (1, 2, 3)


@pytest.mark.parametrize("bad, words", [
    (-1, "out of range"),
    (2**192 - 1, "out of range"),
    (2**200, "out of range"),
    (True, "must be an int"),
    ("7", "must be an int"),
    (1.0, "must be an int"),
    ((1, 2), "exactly 3"),
    ((1, 2, -3), "must be a u64"),
    ((1, 2, 2**64), "must be a u64"),
    ((2**64 - 1,) * 3, "all ones"),
])
def test_oid_refuses_with_rule_and_value(bad: object, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words) as info:
        h.check_oid(bad)
    assert repr(bad)[:20] in str(info.value)


@pytest.mark.parametrize("bad", [-1, 2**32, False, None, "3"])
def test_index_must_be_u32(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="page index"):
        h.check_index(bad)


def test_page_must_be_exactly_4096_bytes() -> None:
    page = bytes(range(256)) * 16
    assert h.check_page(page) is page
    assert h.check_page(bytearray(page)) == page
    assert h.check_page(memoryview(page)) == page
    with pytest.raises(InvalidArgument, match="length 4095"):
        h.check_page(page[:-1])
    with pytest.raises(InvalidArgument, match="length 4097"):
        h.check_page(bytearray(page + b"x"))
    with pytest.raises(InvalidArgument, match="bytes-like, not str"):
        h.check_page("x" * 4096)


def test_pool_flags_round_trip_in_original_layout() -> None:
    flags = h.pool_flags(persistent=True, shared=False)
    assert flags == 0x01000001
    assert h.parse_pool_flags(flags) == (True, False)
    assert h.parse_pool_flags(h.pool_flags(False, True)) == (False, True)


@pytest.mark.parametrize("flags, words", [
    (0x01000100, "reserved bits"),
    (0x01800000, "reserved bits"),
    (0x01000004, "precompressed"),
    (0x01000010, "page size"),
    (0x02000000, "ABI version 2"),
    (0x00000001, "ABI version 0"),
    (-1, "u32"),
    (2**32, "u32"),
])
def test_pool_flags_refuse_what_the_abi_forbids(flags: int,
                                                words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        h.parse_pool_flags(flags)


def test_uuid_forms_and_reserved_all_ones() -> None:
    u = uuid.uuid4()
    assert h.parse_uuid(u) == u
    assert h.parse_uuid(str(u)) == u
    assert h.parse_uuid(u.bytes) == u
    assert h.parse_uuid(u.int) == u
    with pytest.raises(InvalidArgument, match="all ones"):
        h.parse_uuid(2**128 - 1)
    with pytest.raises(InvalidArgument, match="must be a UUID"):
        h.parse_uuid("not-a-uuid")
    with pytest.raises(InvalidArgument, match="must be a UUID"):
        h.parse_uuid(b"short")


@pytest.mark.parametrize("text, value", [
    ("512MiB", 512 << 20), ("1G", 1 << 30), ("4096", 4096), (4096, 4096),
    ("1.5KiB", 1536), ("2MB", 2_000_000), (" 3 k ", 3072),
])
def test_sizes_parse_binary_and_decimal_units(text: object,
                                              value: int) -> None:
    assert h.parse_size(text) == value


@pytest.mark.parametrize("bad", ["12 parsecs", "", "-1M", -5, None, 1.5, "1.5",
                                 "2.5B", 1 << 63, "99999999999999999999TiB",
                                 "9" * 400])
def test_sizes_refuse_nonsense(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="capacity"):
        h.parse_size(bad, "capacity")


def test_format_size_picks_a_readable_unit() -> None:
    assert h.format_size(512) == "512 B"
    assert h.format_size(1536) == "1.5 KiB"
    assert h.format_size(3 << 30) == "3.0 GiB"


@pytest.mark.parametrize("bad", ["", "a\nb", "x\x1b]0;pwned\x07", "n\0ul",
                                 "x" * 256, None, 5])
def test_client_names_are_short_printable_text(bad: object) -> None:
    with pytest.raises(InvalidArgument, match=r"1\.\.255 printable"):
        h.check_name(bad)
    with pytest.raises(InvalidArgument, match=r"1\.\.255 printable"):
        tmem.Host().client(bad)  # type: ignore[arg-type]


def test_a_long_bad_value_is_cut_short_in_its_message() -> None:
    with pytest.raises(InvalidArgument) as caught:
        h.check_name("\n" * 10_000)
    assert len(str(caught.value)) < 200
    assert "(20002 characters)" in str(caught.value)


def test_flags_are_bools_not_any_truthy_value() -> None:
    client = tmem.Host().client("c")
    with pytest.raises(InvalidArgument, match="persistent 'yes' must be"):
        client.new_pool(persistent="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="shared 1 must be"):
        h.pool_flags(False, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="dedup 'yes' must be"):
        tmem.Host(dedup="yes")  # type: ignore[arg-type]
