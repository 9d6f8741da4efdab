"""Who may connect, and who may steer.

Rules:
- Unix socket: the socket file's mode decides who can connect at all (the
  kernel checks it).  A peer that connected is a tenant.  It is an admin if
  its uid (SO_PEERCRED) is root or the daemon's owner, or if it presents
  the admin token.
- TCP: off unless configured, and then every HELLO must carry the tenant
  token or the admin token; the admin token makes an admin.
- A HELLO that resumes a session is admitted by its resume token alone (a
  secret as long as the tenant token, good for that one session): so a
  client redirected after a migration reaches its session over TCP even
  if it came from a Unix socket and holds no tenant token.
- Tokens are compared in constant time.
- A control-only session (an admin tool) must be an admin.
"""

from __future__ import annotations

import hmac
import socket
import struct
from dataclasses import dataclass

from tmem.engine.errors import PermissionDenied

_PEERCRED = struct.Struct("3i")  # pid, uid, gid


@dataclass(frozen=True)
class Peer:
    """The far end of a connection, as the kernel reports it."""

    transport: str
    """"unix" or "tcp"."""
    address: str
    uid: int | None = None
    pid: int | None = None

    def describe(self) -> str:
        if self.uid is None:
            return f"{self.transport} {self.address}"
        return f"uid {self.uid} pid {self.pid}"


def peer_of(sock: socket.socket) -> Peer:
    """Identify the peer of an accepted socket."""
    if sock.family == socket.AF_UNIX:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                              _PEERCRED.size)
        pid, uid, _ = _PEERCRED.unpack(raw)
        return Peer("unix", "", uid=uid, pid=pid)
    host, port = sock.getpeername()[:2]
    return Peer("tcp", f"{host}:{port}")


@dataclass(frozen=True)
class AuthPolicy:
    """The daemon's rules for admitting a HELLO."""

    owner_uid: int
    tenant_token: bytes | None = None
    admin_token: bytes | None = None

    def admit(self, peer: Peer, token: bytes, control: bool) -> bool:
        """Return whether the peer is an admin; raise if it is refused."""
        admin = self._is_admin(peer, token)
        if peer.transport == "tcp" and not admin and not _same(
                token, self.tenant_token):
            raise PermissionDenied(
                f"peer {peer.address} presented no valid token; TCP "
                "clients need the tenant or admin token")
        if control and not admin:
            raise PermissionDenied(
                f"peer {peer.describe()} is not an admin; control "
                "sessions need root, the daemon's owner or the admin "
                "token")
        return admin

    def _is_admin(self, peer: Peer, token: bytes) -> bool:
        if _same(token, self.admin_token):
            return True
        return peer.transport == "unix" and peer.uid in (0, self.owner_uid)


def _same(given: bytes, expected: bytes | None) -> bool:
    return expected is not None and hmac.compare_digest(given, expected)
