"""Every engine test ends with `check()` on every Host it made: the
accounting is recounted from the stored pages after each test, whatever
the test itself asserted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tmem


@pytest.fixture(autouse=True)
def every_host_checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    made: list[tmem.Host] = []
    init = tmem.Host.__init__

    def recording(self: tmem.Host, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(tmem.Host, "__init__", recording)
    yield
    for host in made:
        host.check()
