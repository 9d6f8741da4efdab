"""Fixtures shared by every test: real pages and a checked host."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tmem
from tmem import corpus


@pytest.fixture(scope="session")
def pages() -> list[bytes]:
    """512 distinct real pages (text and binary files of this machine)."""
    return corpus.pages(512, distinct=True)


@pytest.fixture
def host() -> Iterator[tmem.Host]:
    """A roomy host whose accounting is verified after the test."""
    h = tmem.Host(capacity="64MiB", compress="lz4")
    yield h
    h.check()
