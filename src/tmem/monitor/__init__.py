"""Watching and steering a tmem host: `tmem top`, `tmem list`,
`tmem ctl` and a Prometheus `/metrics` endpoint.

Everything here reads frozen snapshots (`ControlAPI.snapshot()`) and acts
through `ControlAPI`; nothing touches the per-page path.  Textual and
prometheus_client are imported only by the modules that need them.

- connect.py: `connect_control`, the one seam to the daemon.
- text.py: numbers and `tmem list` as plain text.
- view.py: rates, the client table, sorting, selection (`TopView`).
- batch.py: `tmem top -b`, plain text on a schedule.
- top.py: `tmem top`, the Textual app.
- metrics.py: the Prometheus collector and the `/metrics` server.
- commands.py: the click commands `top`, `list` and `ctl`.
- testing.py: an embedded host behind ControlAPI, real traffic, a clock.
"""

from tmem.monitor.connect import connect_control

__all__ = ["connect_control"]
