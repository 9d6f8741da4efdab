"""A daemon in a background thread, on a short socket path."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmem.server.daemon import Daemon
from tmem.testing import daemon_in_thread


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tmem-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(sockdir: Path) -> Iterator[Daemon]:
    with daemon_in_thread(sockdir / "tmem.sock", capacity=64 << 20,
                          grace=30.0) as d:
        yield d


@pytest.fixture
def address(daemon: Daemon) -> str:
    return f"unix:{daemon.config.socket}"
