"""`tmem top -b`: the same view as the live monitor, printed as text.

Rules:
- Like `top -b`: one frame per refresh, frames separated by a blank
  line, no terminal control codes, output flushed after each frame so a
  pipe sees it at once.
- The first frame is taken at once; each later one `interval` seconds
  after the previous frame was printed (the sleep is injected).
- A refresh that raises ConnectionLost still prints a frame, marked
  disconnected, and counts towards `count`; the next refresh retries.
- It reports whether its last frame reached the daemon, so `top -b -n N`
  in a script can fail when the daemon is gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from tmem.engine.errors import ConnectionLost
from tmem.engine.stats import Snapshot
from tmem.monitor.view import TopView


def run_batch(source: Callable[[], Snapshot], out: TextIO, *,
              interval: float, count: int | None, details: bool = False,
              sleep: Callable[[float], None] = time.sleep) -> bool:
    """Print `count` frames (None: until interrupted); return whether
    the last one reached the daemon.

    Args:
        source: returns a snapshot or raises ConnectionLost.
        out: where frames go.
        interval: seconds between frames.
        count: frames to print, or None for no end.
        details: add every counter under each client (the `t` view).
        sleep: waits between frames (a fake in tests).
    """
    view = TopView(interval)
    view.details = details
    printed = 0
    connected = False
    while count is None or printed < count:
        if printed:
            sleep(interval)
        try:
            view.update(source())
            connected = True
        except ConnectionLost as error:
            view.lost(error)
            connected = False
        if printed:
            out.write("\n")
        out.write(view.render() + "\n")
        out.flush()
        printed += 1
    return connected
