"""Watching and steering a tmem host (issue #5): the live monitor, the
list and control commands and a Prometheus endpoint will live here.

Everything here reads frozen snapshots (`ControlAPI.snapshot()`) and acts
through `ControlAPI`; nothing touches the per-page path.  Textual and
prometheus_client will be imported only by the modules that need them.

- connect.py: `connect_control`, the one seam to the daemon.
- text.py: numbers and `tmem list` as plain text.
- view.py: rates, the client table, sorting, selection (`TopView`).
- batch.py: `tmem top -b`, plain text on a schedule.
- top.py: `tmem top`, the Textual app.
- metrics.py: the Prometheus collector and the `/metrics` server.
- testing.py: an embedded host behind ControlAPI, real traffic, a clock.
"""

from tmem.monitor.connect import connect_control

__all__ = ["connect_control"]
