"""Save and state files: only regular files, written whole or not at all."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO

import pytest

import tmem
from tmem.server import files


def _fail_half_way(f: BinaryIO) -> None:
    f.write(b"half a stream")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
        tmp_path: Path) -> None:
    target = tmp_path / "db.tmem"
    target.write_bytes(b"the good save")
    with pytest.raises(tmem.InvalidArgument,
                       match=r"db\.tmem'.*No space left on device"):
        files.write_atomically(target, True, _fail_half_way)
    assert target.read_bytes() == b"the good save"
    assert os.listdir(tmp_path) == ["db.tmem"]


def test_a_new_file_is_private_and_replaces_only_when_asked(
        tmp_path: Path) -> None:
    target = tmp_path / "db.tmem"
    files.write_atomically(target, False, lambda f: f.write(b"one"))
    assert target.stat().st_mode & 0o777 == 0o600
    with pytest.raises(tmem.InvalidArgument, match="exists; pass --force"):
        files.write_atomically(target, False, lambda f: f.write(b"two"))
    files.write_atomically(target, True, lambda f: f.write(b"three"))
    assert target.read_bytes() == b"three"
    assert os.listdir(tmp_path) == ["db.tmem"]


def test_special_files_are_refused_by_name_and_left_alone(
        tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo, 0o644)
    with pytest.raises(tmem.InvalidArgument,
                       match=r"'.*pipe'.*a FIFO, not a regular file"):
        files.write_atomically(fifo, True, lambda f: f.write(b"x"))
    with pytest.raises(tmem.InvalidArgument, match="a FIFO"), \
            files.reading(fifo):  # would block without O_NONBLOCK
        pass
    with pytest.raises(tmem.InvalidArgument, match="a directory"):
        files.write_atomically(tmp_path, True, lambda f: f.write(b"x"))
    with pytest.raises(tmem.InvalidArgument, match="a device"), \
            files.reading(Path("/dev/zero")):
        pass
    assert fifo.stat().st_mode & 0o777 == 0o644
    assert sorted(os.listdir(tmp_path)) == ["pipe"]


def test_a_missing_folder_or_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(tmem.InvalidArgument,
                       match="its folder does not exist"):
        files.check_writable(tmp_path / "nowhere" / "s.tmem")
    with pytest.raises(tmem.InvalidArgument,
                       match=r"cannot read '.*absent'.*No such file"), \
            files.reading(tmp_path / "absent"):
        pass
