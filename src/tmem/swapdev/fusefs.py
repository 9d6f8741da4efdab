"""The FUSE file system that serves a swap image from a persistent pool.

The mount holds two files:
- `swap.img`: the `SwapImage`, read and written 1:1 by the kernel;
- `stats`: one line of JSON: the image's counters, its pool's content
  and the serving process's pid.

Rules:
- Every file is opened with FUSE `direct_io`.  Without it the kernel
  keeps swapped pages in the file's page cache and serves swap-ins from
  there: the pool would see the writes but never a read.
- libfuse3 is loaded through mfusepy (FUSE_LIBRARY_PATH), because only
  mfusepy passes on fallocate, which is how discards arrive.
- One thread serves every request.  Handlers hold the GIL, so libfuse's
  worker threads cannot run them in parallel and only add hand-offs
  (with them, `tmem bench swap` measured swap-in 15-30% slower).
- The pool's errors become EIO (the image does it): the kernel must see
  a failed I/O, never a silently wrong page.  The first EIO of a run is
  logged, and the first success after it; the image counts each one.
- When discards leave the pool at half its size or less since the last
  time (and at least TRIM_MIN_PAGES fewer), the process hands its free
  heap memory back to the kernel (malloc_trim): without it, the memory of
  a finished workload's swap stays resident, though the pool is empty.
  Not during steady churn: new pages reuse the freed memory anyway.
- It logs events (mounted, unmounted, the image starts or stops failing
  with EIO, memory handed back), never single pages.

Lifecycle: `SwapServer.start()` mounts in a thread of its own and returns
once the kernel has initialised the mount; `serve()` does the same in the
calling thread, for a caller that owns its threads.  Unmounting the mount
point (`stop()`, or `umount` from anywhere) ends the serving thread.  The
thread is not a daemon thread: a process does not exit while it serves.

Signals: libfuse takes over SIGHUP, SIGINT and SIGTERM while it serves,
unless the process already handles them, and then ends the mount on the
first one.  A process serving swap should install its own handlers first
(the standalone server does).

The serving process must never be swapped out to its own image: the
kernel would wait on the very process it is swapping.  `lock_memory()`
(mlockall) and `set_io_flusher()` (PR_SET_IO_FLUSHER, done by `serve`)
guard against that.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import itertools
import json
import logging
import os
import stat
import threading
import time
import types
from typing import Any

from tmem.engine.api import PoolAPI
from tmem.engine.errors import SwapError
from tmem.engine.handles import PAGE_SIZE
from tmem.swapdev.image import SwapImage
from tmem.swapdev.system import libfuse3_path, run

log = logging.getLogger(__name__)

IMAGE_NAME = "swap.img"
STATS_NAME = "stats"
SUBTYPE = "tmem"
FS_TYPE = f"fuse.{SUBTYPE}"
"""The mount's type in /proc/self/mountinfo: how leftovers are found."""

TRIM_MIN_PAGES = 4096
"""Pages (16 MiB) a shrink must free before memory is handed back; a
trim takes about 20 ms for a 400 MiB heap."""

_PR_SET_IO_FLUSHER = 57
_MCL_CURRENT, _MCL_FUTURE, _MCL_ONFAULT = 1, 2, 4


def load_mfusepy() -> types.ModuleType:
    """Import mfusepy bound to libfuse3.

    Raises:
        SwapError: libfuse3 is not installed.
    """
    if not os.environ.get("FUSE_LIBRARY_PATH"):
        path = libfuse3_path()
        if path is None:
            raise SwapError("libfuse3 is not installed: apt-get install "
                            "fuse3 libfuse3-3")
        os.environ["FUSE_LIBRARY_PATH"] = path
    return importlib.import_module("mfusepy")


def lock_memory() -> bool:
    """Keep this process's pages in RAM, present and future (mlockall,
    locking each page when first touched).  Return False if refused."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlockall(_MCL_CURRENT | _MCL_FUTURE | _MCL_ONFAULT) == 0:
        return True
    log.warning("mlockall refused (%s): the server's memory may be "
                "swapped out", os.strerror(ctypes.get_errno()))
    return False


def unlock_memory() -> None:
    """Undo `lock_memory` (the swap device is gone)."""
    ctypes.CDLL(None, use_errno=True).munlockall()


def trim_heap() -> bool:
    """Hand free heap memory back to the kernel (glibc malloc_trim);
    return False where the C library has no such call."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


def set_io_flusher() -> bool:
    """Mark the calling thread, and the threads it starts, as serving I/O:
    their allocations never wait on I/O.  Return False if refused."""
    libc = ctypes.CDLL(None, use_errno=True)
    args = (ctypes.c_ulong(n) for n in (1, 0, 0, 0))
    if libc.prctl(_PR_SET_IO_FLUSHER, *args) == 0:
        return True
    log.warning("PR_SET_IO_FLUSHER refused (%s): memory pressure may "
                "stall the swap device", os.strerror(ctypes.get_errno()))
    return False


class SwapServer:
    """Serves one swap image on a FUSE mount.

    Args:
        pool: a persistent pool for the image alone (it is cleared).
        size: the image's bytes, a multiple of 4096.
        mountpoint: an existing, empty directory.
    """

    def __init__(self, pool: PoolAPI, size: int, mountpoint: str) -> None:
        self.image = SwapImage(pool, size)
        self.mountpoint = os.path.abspath(mountpoint)
        self._ready = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        state = "serving" if self.serving else "stopped"
        return f"<SwapServer {self.mountpoint!r} {state}>"

    @property
    def image_path(self) -> str:
        return os.path.join(self.mountpoint, IMAGE_NAME)

    @property
    def stats_path(self) -> str:
        return os.path.join(self.mountpoint, STATS_NAME)

    @property
    def serving(self) -> bool:
        return self._ready.is_set() and not self._done.is_set()

    def serve(self) -> None:
        """Mount and serve until unmounted; blocks the calling thread.

        Raises:
            SwapError: the mount failed (libfuse says why on stderr).
        """
        mfusepy = load_mfusepy()
        set_io_flusher()
        operations = _Operations(self.image, self._ready)
        try:
            mfusepy.FUSE(operations, self.mountpoint, foreground=True,
                         nothreads=True, direct_io=True, fsname=SUBTYPE,
                         subtype=SUBTYPE)
        except RuntimeError as error:
            raise SwapError(f"FUSE mount at {self.mountpoint!r} failed "
                            f"with status {error}") from None
        finally:
            self._done.set()
        log.info("unmounted %s", self.mountpoint)

    def start(self, timeout: float = 10.0) -> None:
        """Serve in a new thread; return once the mount is ready.

        Raises:
            SwapError: the mount failed or was not ready in time.
        """
        if self._thread is not None:
            raise SwapError(f"{self!r} was already started")
        self._thread = threading.Thread(
            target=self._serve_catching, name="tmem-swap-fuse")
        self._thread.start()
        ready = self._wait_ready(timeout)
        if self._error is not None:
            raise SwapError(str(self._error))
        if not ready:
            raise SwapError(f"FUSE mount at {self.mountpoint!r} was not "
                            f"ready in {timeout:g} s")
        log.info("serving %s (%d bytes) from pool %d", self.image_path,
                 self.image.size, self.image.pool.pool_id)

    def stop(self, timeout: float = 30.0) -> None:
        """Unmount (if still mounted), wait for the serving thread and
        flush the image's pages from the pool.

        Raises:
            SwapError: the mount is busy (a loop device still holds the
                image) or the thread did not end in time.
        """
        if self.serving:
            run(["umount", self.mountpoint], timeout)
        if not self.wait(timeout):
            raise SwapError(f"the FUSE thread for {self.mountpoint!r} did "
                            f"not end in {timeout:g} s after unmounting")
        self.image.clear()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until serving has ended; False on timeout."""
        if not self._done.wait(timeout):
            return False
        if self._thread is not None:
            self._thread.join(timeout)
        return True

    def _serve_catching(self) -> None:
        try:
            self.serve()
        except BaseException as error:
            self._error = error
            log.error("%s", error)

    def _wait_ready(self, timeout: float) -> bool:
        """Wait for the mount's init or the thread's end."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self._done.is_set() or time.monotonic() > deadline:
                break
        return self._ready.is_set() and not self._done.is_set()


class _Operations:
    """The mfusepy operations: three inodes, two files, one image.

    Paths are "/", "/swap.img" and "/stats".  Each open of the stats
    file renders one snapshot that its reads slice, so a reader never
    sees two snapshots glued together.
    """

    use_ns = True  # nanosecond times, as mfusepy prefers

    def __init__(self, image: SwapImage, ready: threading.Event) -> None:
        self.image = image
        self.ready = ready
        self.failing = False
        self.snapshots: dict[int, bytes] = {}
        self.next_fh = itertools.count(1)
        self.started_ns = 0
        self.trim_high = 0
        """Most pages held just before a discard since the last trim."""

    # -- mount lifecycle ------------------------------------------------

    def init(self, path: str) -> None:
        self.started_ns = time.time_ns()
        self.ready.set()

    def destroy(self, path: str) -> None:
        self.snapshots.clear()

    # -- names ----------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        times = {"st_atime": self.started_ns, "st_mtime": self.started_ns,
                 "st_ctime": self.started_ns}
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, **times}
        if path == "/" + IMAGE_NAME:
            stored = self.image.pool.stats().content.pages
            return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1,
                    "st_size": self.image.size, "st_blksize": PAGE_SIZE,
                    "st_blocks": stored * (PAGE_SIZE // 512), **times}
        if path == "/" + STATS_NAME:
            # size 0 like a /proc file: direct_io reads go to us anyway
            return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, **times}
        raise OSError(errno.ENOENT, path)

    def readdir(self, path: str, fh: int) -> list[str]:
        if path != "/":
            raise OSError(errno.ENOTDIR, path)
        return [".", "..", IMAGE_NAME, STATS_NAME]

    def statfs(self, path: str) -> dict[str, int]:
        free = self.image.pages - self.image.pool.stats().content.pages
        return {"f_bsize": PAGE_SIZE, "f_frsize": PAGE_SIZE,
                "f_blocks": self.image.pages, "f_bfree": free,
                "f_bavail": free, "f_files": 2, "f_namemax": 255}

    # -- opening and closing ------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        fh = next(self.next_fh)
        if path == "/" + STATS_NAME:
            if flags & os.O_ACCMODE != os.O_RDONLY:
                raise OSError(errno.EACCES, path)
            self.snapshots[fh] = self._render_stats()
        elif path != "/" + IMAGE_NAME:
            raise OSError(errno.ENOENT, path)
        return fh

    def release(self, path: str, fh: int) -> int:
        self.snapshots.pop(fh, None)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        return 0  # every write is in the pool when it returns

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        if path == "/" + IMAGE_NAME and length == self.image.size:
            return 0
        raise OSError(errno.EPERM, f"{path} has a fixed size")

    # -- data ---------------------------------------------------------------

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        snapshot = self.snapshots.get(fh)
        if snapshot is not None:
            return snapshot[offset:offset + size]
        try:
            data = self.image.read(offset, size)
        except OSError as error:
            self._failed(error)
            raise
        if self.failing:
            self._recovered()
        return data

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        try:
            written = self.image.write(offset, data)
        except OSError as error:
            self._failed(error)
            raise
        if self.failing:
            self._recovered()
        return written

    def fallocate(self, path: str, mode: int, offset: int, size: int,
                  fh: int) -> int:
        try:
            flushed = self.image.fallocate(mode, offset, size)
        except OSError as error:
            self._failed(error)
            raise
        if flushed:
            self._after_shrink(flushed)
        return 0

    def _render_stats(self) -> bytes:
        fields = {**self.image.stats().as_dict(), "server_pid": os.getpid()}
        return json.dumps(fields).encode() + b"\n"

    # -- events ---------------------------------------------------------------

    def _after_shrink(self, flushed: int) -> None:
        pages = self.image.pool.stats().content.pages
        self.trim_high = max(self.trim_high, pages + flushed)
        freed = self.trim_high - pages
        if pages * 2 > self.trim_high or freed < TRIM_MIN_PAGES:
            return
        self.trim_high = pages
        if trim_heap():
            log.info("discards freed %d pages since the last trim; free "
                     "heap memory handed back to the kernel", freed)

    def _failed(self, error: OSError) -> None:
        """Log the first EIO of a run of them (the kernel sees each)."""
        if error.errno == errno.EIO and not self.failing:
            self.failing = True
            log.warning("the swap image fails with EIO (%s); failed writes"
                        " stay in the kernel's memory, failed reads kill "
                        "their process", error.strerror)

    def _recovered(self) -> None:
        self.failing = False
        s = self.image.stats()
        log.info("the swap image serves again (so far: %d writes refused, "
                 "%d pool errors)", s.refused_writes, s.pool_errors)
