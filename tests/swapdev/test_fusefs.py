"""The FUSE file system, mounted in this process (no swap)."""

from __future__ import annotations

import ctypes
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import tmem
from tmem.engine.errors import SwapError
from tmem.swapdev.fusefs import SwapServer
from tmem.swapdev.system import is_mounted

pytestmark = pytest.mark.needs_swap
P = tmem.PAGE_SIZE
SIZE = 8 << 20


def _serve(host: tmem.Host, mountpoint: Path) -> SwapServer:
    server = SwapServer(host.client("swap").new_pool(persistent=True),
                        SIZE, str(mountpoint))
    server.start()
    return server


@pytest.fixture
def server(host: tmem.Host, tmp_path: Path) -> Iterator[SwapServer]:
    server = _serve(host, tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _punch(fd: int, offset: int, length: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    mode = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    if libc.fallocate(fd, mode, ctypes.c_long(offset),
                      ctypes.c_long(length)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def test_the_mount_shows_a_fixed_size_image_and_a_stats_file(
        server: SwapServer) -> None:
    assert sorted(os.listdir(server.mountpoint)) == ["stats", "swap.img"]
    st = os.stat(server.image_path)
    assert st.st_size == SIZE
    assert st.st_mode & 0o777 == 0o600
    assert is_mounted(server.mountpoint)


def test_pages_written_to_the_file_read_back_from_the_pool(
        server: SwapServer, pages: list[bytes]) -> None:
    data = b"".join(pages[:16])
    fd = os.open(server.image_path, os.O_RDWR)
    try:
        assert os.pwrite(fd, data, 64 * P) == len(data)
        assert os.pread(fd, len(data), 64 * P) == data
        assert os.pread(fd, P, 0) == bytes(P)
    finally:
        os.close(fd)
    # direct_io: every byte went through the pool, none to a page cache
    stats = server.image.stats()
    assert stats.write_bytes == len(data)
    assert stats.read_bytes == len(data) + P
    assert server.image.pool.get(0, 64) == pages[0]


def test_a_punched_hole_flushes_the_pages(server: SwapServer,
                                          pages: list[bytes]) -> None:
    fd = os.open(server.image_path, os.O_RDWR)
    try:
        os.pwrite(fd, b"".join(pages[:4]), 0)
        _punch(fd, P, 2 * P)
        assert os.pread(fd, 4 * P, 0) == (pages[0] + bytes(2 * P)
                                          + pages[3])
    finally:
        os.close(fd)
    assert server.image.stats().pages_stored == 2


def test_partial_page_writes_fail_with_einval(server: SwapServer) -> None:
    fd = os.open(server.image_path, os.O_RDWR)
    try:
        with pytest.raises(OSError) as caught:
            os.pwrite(fd, b"x" * 100, 0)
        assert caught.value.errno == errno.EINVAL
    finally:
        os.close(fd)


def test_a_write_the_pool_refuses_fails_with_eio(
        tmp_path: Path, pages: list[bytes]) -> None:
    small = tmem.Host(capacity=2 * (P + 128), compress="none")
    server = _serve(small, tmp_path)
    try:
        fd = os.open(server.image_path, os.O_RDWR)
        try:
            with pytest.raises(OSError) as caught:
                os.pwrite(fd, b"".join(pages[:3]), 0)
            assert caught.value.errno == errno.EIO
            assert os.pread(fd, 3 * P, 0) == bytes(3 * P)
        finally:
            os.close(fd)
        assert server.image.stats().refused_writes == 1
    finally:
        server.stop()


def test_the_stats_file_is_one_json_snapshot(server: SwapServer,
                                             pages: list[bytes]) -> None:
    fd = os.open(server.image_path, os.O_RDWR)
    try:
        os.pwrite(fd, pages[0] + pages[1], 0)
    finally:
        os.close(fd)
    with open(server.stats_path) as f:
        fields = json.loads(f.read())
    assert fields["writes"] == 1
    assert fields["pages_stored"] == 2
    assert fields["server_pid"] == os.getpid()
    assert fields["size"] == SIZE


def test_the_stats_file_is_read_only(server: SwapServer) -> None:
    with pytest.raises(PermissionError):
        os.open(server.stats_path, os.O_WRONLY)


def test_stop_unmounts_and_flushes_the_image(
        host: tmem.Host, tmp_path: Path, pages: list[bytes]) -> None:
    server = _serve(host, tmp_path)
    fd = os.open(server.image_path, os.O_RDWR)
    os.pwrite(fd, pages[0], 0)
    os.close(fd)
    server.stop()
    assert not is_mounted(str(tmp_path))
    assert not server.serving
    assert server.image.pool.stats().content.pages == 0


def test_a_failed_mount_is_reported(host: tmem.Host,
                                    tmp_path: Path) -> None:
    server = SwapServer(host.client("swap").new_pool(persistent=True),
                        SIZE, str(tmp_path / "missing"))
    with pytest.raises(SwapError, match=r"FUSE mount at .* failed"):
        server.start()
