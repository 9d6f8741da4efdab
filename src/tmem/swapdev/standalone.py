"""A process that serves one swap image from an embedded tmem Host.

For tests, benchmarks and machines without the tmem daemon: it stands in
for the daemon, which serves the image from its own process.

    python -m tmem.swapdev.standalone MOUNTPOINT SIZE [--capacity C]
                                      [--compress lz4]

Rules:
- The workload never shares this process: if the server dies, swapped
  pages are gone and their owners get SIGBUS; the kernel must never wait
  on a process it is swapping.  So the server is its own process, in its
  own session (a terminal's Ctrl-C does not reach it), with its memory
  locked (it must not be swapped to its own image).
- SIGTERM, SIGINT and SIGHUP ask it to unmount.  While a loop device
  still holds the image, the unmount fails and the server keeps serving:
  stopping would lose the swapped pages.  `off()` tears down in order.
- It exits 0 once the mount ends, however it ended.
- The Host's capacity defaults to what a full image needs uncompressed,
  so the pool never refuses a write.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

import tmem
from tmem.engine.errors import SwapError
from tmem.engine.handles import PAGE_SIZE, parse_size
from tmem.engine.pool import PAGE_METADATA
from tmem.swapdev.fusefs import SwapServer, lock_memory
from tmem.swapdev.system import is_mounted

log = logging.getLogger(__name__)


def full_image_capacity(size: int) -> int:
    """Host bytes that hold every page of an image raw."""
    return size // PAGE_SIZE * (PAGE_SIZE + PAGE_METADATA)


class ServerProcess:
    """A standalone server process started by `spawn`.

    Its stderr (the log) goes to `log_path`.
    """

    def __init__(self, process: subprocess.Popen[bytes], mountpoint: str,
                 log_path: str) -> None:
        self.process = process
        self.mountpoint = mountpoint
        self.log_path = log_path

    def __repr__(self) -> str:
        return f"<ServerProcess pid {self.pid} at {self.mountpoint!r}>"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_mounted(self, timeout: float) -> None:
        """Return once the image is mounted.

        Raises:
            SwapError: the process exited or the mount was not there in
                time (the process is then killed).
        """
        deadline = time.monotonic() + timeout
        while not is_mounted(self.mountpoint):
            if self.process.poll() is not None:
                raise SwapError(f"swap server exited with status "
                                f"{self.process.returncode} before "
                                f"mounting: {self._last_log_line()}")
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait(5)
                raise SwapError(f"swap server did not mount "
                                f"{self.mountpoint!r} in {timeout:g} s")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """Wait for the process to end (it does once unmounted); kill it
        if it has not ended after `timeout` seconds."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("swap server pid %d still running %g s after the "
                        "unmount; killing it", self.pid, timeout)
            self.process.kill()
            self.process.wait(5)

    def _last_log_line(self) -> str:
        try:
            with open(self.log_path) as f:
                lines = f.read().strip().splitlines()
        except OSError:
            lines = []
        return lines[-1] if lines else "(no log)"


def spawn(mountpoint: str, size: int, capacity: int | None = None,
          compress: str = "lz4", log_path: str | None = None,
          timeout: float = 30.0) -> ServerProcess:
    """Start a server process and wait until the image is mounted.

    Args:
        mountpoint: an existing, empty directory.
        size: the image's bytes.
        capacity: the embedded Host's capacity (default: a full image).
        compress: the Host's codec.
        log_path: where its log goes (default: MOUNTPOINT + ".log").
    """
    log_path = log_path or mountpoint.rstrip("/") + ".log"
    argv = [sys.executable, "-m", "tmem.swapdev.standalone", mountpoint,
            str(size), "--compress", compress]
    if capacity is not None:
        argv += ["--capacity", str(capacity)]
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=log_file, start_new_session=True)
    server = ServerProcess(process, mountpoint, log_path)
    server.wait_mounted(timeout)
    return server


def main(argv: list[str] | None = None) -> int:
    """Serve until the mount ends; return the exit status."""
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s tmem-swap[%(process)d] %(levelname)s "
               "%(message)s")
    lock_memory()
    capacity = args.capacity or full_image_capacity(args.size)
    host = tmem.Host(capacity=capacity, compress=args.compress)
    pool = host.client("swap").new_pool(persistent=True)
    server = SwapServer(pool, args.size, args.mountpoint)

    # our handlers before libfuse's: it would end the mount on a signal
    stop_asked = threading.Event()

    def ask_stop(signum: int, frame: FrameType | None) -> None:
        stop_asked.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, ask_stop)
    server.start()
    while not server.wait(0.5):
        if stop_asked.is_set():
            stop_asked.clear()
            _try_unmount(server)
    return 0


def _try_unmount(server: SwapServer) -> None:
    try:
        server.stop(timeout=10)
    except SwapError as error:
        log.warning("not stopping: %s (swap may still be on; run off())",
                    error)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tmem.swapdev.standalone")
    parser.add_argument("mountpoint")
    parser.add_argument("size", type=lambda s: parse_size(s, "size"))
    parser.add_argument("--capacity", type=lambda s: parse_size(
        s, "capacity"), default=None)
    parser.add_argument("--compress", default="lz4")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
