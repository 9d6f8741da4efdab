"""Where the project's bundled data lives: the real traces guests replay.

Rules:
- The data directory is `$TMEM_DATA` when that variable is set and not
  empty, else the `data/` folder of the repository checkout this module
  was imported from.
- Nothing here downloads anything: the traces ship with the repository,
  so tmem runs on a machine that has nothing else.
- A directory or trace that is not there is an `InvalidArgument` naming
  the path and where it was looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

from tmem.engine.errors import InvalidArgument

ENV_VAR = "TMEM_DATA"
_CHECKOUT_DATA = Path(__file__).resolve().parents[2] / "data"


def data_dir() -> Path:
    """Return the bundled data directory.

    Raises:
        InvalidArgument: the directory does not exist.
    """
    override = os.environ.get(ENV_VAR, "")
    if override:
        path = Path(override)
        if not path.is_dir():
            raise InvalidArgument(
                f"{ENV_VAR}={override!r} is not a directory; it must name "
                "the folder that holds traces/")
        return path
    if not _CHECKOUT_DATA.is_dir():
        raise InvalidArgument(
            f"no data directory at {str(_CHECKOUT_DATA)!r}: run from a "
            f"repository checkout or set {ENV_VAR}")
    return _CHECKOUT_DATA


def traces_dir() -> Path:
    """The folder of bundled traces (`data_dir() / "traces"`)."""
    return data_dir() / "traces"


def trace_path(name: str) -> Path:
    """Return the path of the bundled trace file `name`.

    Raises:
        InvalidArgument: no such file among the bundled traces.
    """
    path = traces_dir() / name
    if not path.is_file():
        known = sorted(p.name for p in traces_dir().iterdir()
                       if p.is_file() and p.suffix not in (".md", ".py"))
        raise InvalidArgument(
            f"no bundled trace named {name!r} in {str(traces_dir())!r}; "
            f"the bundled traces are {', '.join(known)}")
    return path
