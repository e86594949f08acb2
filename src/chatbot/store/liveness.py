"""Who writes a streaming reply, and whether that writer can still be alive.

An owner id is ``host:pid:start``, where ``start`` is the process start time (Linux ticks since
boot, or 0 elsewhere). On the same host this tells apart a live replica, a dead process, and an
earlier run of this very process slot (a container restarted as pid 1): only the first may keep
a reply ``streaming``. Owners on other hosts are judged by their heartbeat alone.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def process_start(pid: int) -> str:
    """The start time of a process, stable for its life; "0" when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    # The command name (field 2) may contain spaces and parentheses; count after the last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else "0"


def current_owner_id() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start(pid)}"


def owner_is_gone(owner_id: str | None, me: str) -> bool:
    """True when the owner certainly cannot be writing any more.

    ``me`` is the id of the caller. The same id as ``me`` is never gone (it is this process).
    """
    if owner_id is None:
        return True
    if owner_id == me:
        return False
    host, pid, start = _split(owner_id)
    my_host, my_pid, _ = _split(me)
    if host is None or host != my_host or pid is None:
        return False
    if pid == my_pid:
        return True  # this pid is ours now, so the owner was an earlier run of this slot
    if not _pid_alive(pid):
        return True
    return start not in ("0", None) and process_start(pid) not in ("0", start)


def _split(owner_id: str) -> tuple[str | None, int | None, str | None]:
    parts = owner_id.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None, None, None
    return parts[0], int(parts[1]), parts[2]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
