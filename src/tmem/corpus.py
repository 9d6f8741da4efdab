"""Real 4 KiB pages from files on this machine, for benchmarks, tests and
guests' virtual disks.

Compression and dedup figures only mean something on real data, so nothing
in tmem measures zeros or random bytes.  The corpus is the machine's own
Python standard library (text: source files) and shared libraries (binary:
ELF code and data), read in a fixed order so the same machine always yields
the same pages.

Rules:
- Sources are read sorted by path; pages are PAGE_SIZE slices at 4 KiB
  offsets; a file's short tail is padded with zeros, as a page cache would.
- `pages()` alternates text and binary files so any prefix is a mix.
- Every page returned is its own bytes object (no shared buffers), so
  memory measurements count real copies.
"""

from __future__ import annotations

import glob
import os
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass

PAGE_SIZE = 4096
_TEXT_GLOBS = ("**/*.py",)
_BINARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                "/usr/lib64", "/usr/lib")


@dataclass(frozen=True)
class CorpusInfo:
    """Where a corpus came from."""

    text_files: int
    binary_files: int
    pages: int


def _text_files() -> list[str]:
    root = sysconfig.get_paths()["stdlib"]
    found: list[str] = []
    for pattern in _TEXT_GLOBS:
        found += glob.glob(os.path.join(root, pattern), recursive=True)
    return sorted(f for f in found if "site-packages" not in f)


def _binary_files() -> list[str]:
    found: list[str] = []
    for folder in _BINARY_DIRS:
        found += glob.glob(os.path.join(folder, "*.so*"))
    found += glob.glob(os.path.join(sys.base_prefix, "lib", "*.so*"))
    found.append(os.path.realpath(sys.executable))
    return sorted({os.path.realpath(f) for f in found if os.path.isfile(f)})


def _file_pages(path: str) -> Iterator[bytes]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return
    for offset in range(0, len(data), PAGE_SIZE):
        chunk = data[offset:offset + PAGE_SIZE]
        if len(chunk) < PAGE_SIZE:
            chunk += bytes(PAGE_SIZE - len(chunk))
        yield chunk


def iter_pages(limit: int | None = None) -> Iterator[bytes]:
    """Yield real pages, text and binary files alternating."""
    sources = [iter(_text_files()), iter(_binary_files())]
    produced = 0
    while sources:
        for source in list(sources):
            path = next(source, None)
            if path is None:
                sources.remove(source)
                continue
            for page in _file_pages(path):
                yield page
                produced += 1
                if limit is not None and produced >= limit:
                    return


def pages(count: int, distinct: bool = False) -> list[bytes]:
    """Return `count` real pages (fewer only if the machine has fewer).

    With `distinct`, repeated pages (zero pages, identical blocks) are
    skipped, for tests that need every page to differ.
    """
    result: list[bytes] = []
    seen: set[bytes] = set()
    for page in iter_pages():
        if distinct:
            if page in seen:
                continue
            seen.add(page)
        result.append(page)
        if len(result) >= count:
            break
    return result


def info() -> CorpusInfo:
    """How many files and pages the corpus draws on."""
    text, binary = _text_files(), _binary_files()
    total = sum((os.path.getsize(f) + PAGE_SIZE - 1) // PAGE_SIZE
                for f in text + binary if os.path.isfile(f))
    return CorpusInfo(len(text), len(binary), total)
