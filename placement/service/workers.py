"""Run the API in several worker processes, each with its own listening socket.

With one shared socket (uvicorn's `workers=`), whichever process wakes first accepts a burst
of new connections, and keep-alive clients stay where they landed: one worker can carry nearly
every client while the other idles. Here each worker binds the port with SO_REUSEPORT and the
kernel spreads connections over the workers by a hash of their addresses. A worker that dies
is started again.

Workers die with their parent: killed outright (kill -9, OOM), it can stop none of them, so each
asks the kernel for SIGTERM when its parent goes (Linux) and also watches its parent id. And
since SO_REUSEPORT would let a new start bind beside listeners left over anyway, a start first
binds the port without it and refuses a port that any socket holds.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

log = logging.getLogger("placement.service.workers")
APP = "api.main:app"
RESTART_DELAY_S = 1.0
ORPHAN_CHECK_S = 0.5  # how often a worker checks that its parent is still there
ORPHAN_GRACE_S = 10.0  # an orphaned worker's time to shut down before it exits outright
PR_SET_PDEATHSIG = 1


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def _socket(host: str, port: int, listen: bool) -> socket.socket:
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(host: str, port: int, log_level: str, parent: int | None = None) -> None:
    import uvicorn

    if parent is not None:
        _die_with_parent(parent)
    sock = _socket(host, port, listen=True)
    server = uvicorn.Server(uvicorn.Config(APP, log_level=log_level))
    server.run(sockets=[sock])


def _die_with_parent(parent: int) -> None:
    """Shut down (SIGTERM, as the supervisor would) once the process `parent` is gone: the
    kernel signals at its death where it can (Linux), and a watchdog thread checks the parent
    id anyway (other systems, or a parent gone before the request), then exits outright if the
    shutdown takes longer than ORPHAN_GRACE_S."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        log.error("worker %s: the supervisor (pid %s) is gone; shutting down", os.getpid(),
                  parent)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="placement-orphan-watch", daemon=True).start()


class PortInUse(OSError):
    """The port is bound by another socket (perhaps workers of a start that was killed)."""


def _claim(host: str, port: int) -> socket.socket:
    """The supervisor's guard socket on host:port, bound (not listening) with SO_REUSEPORT as
    the workers' are, once a bind without SO_REUSEPORT has shown no other socket holds the port:
    SO_REUSEPORT alone would bind beside the listeners of another process of this user."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT only
        try:
            probe.bind(addr)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            pids = listeners(port)
            held = (f"by process{'es' if len(pids) > 1 else ''} "
                    f"{', '.join(map(str, pids))}" if pids else "by another process")
            raise PortInUse(errno.EADDRINUSE, f"port {port} is in use {held} (workers left "
                            "from an earlier `placement serve`? stop them first)") from exc
    return _socket(host, port, listen=False)


def listeners(port: int) -> list[int]:
    """The ids of the processes (that this user may inspect) with a socket listening on `port`,
    from /proc (Linux); empty where that cannot be read."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if (len(fields) > 9 and fields[3] == "0A"
                        and int(fields[1].rsplit(":", 1)[1], 16) == port):
                    inodes.add(f"socket:[{fields[9]}]")
    pids: list[int] = []
    if not inodes:
        return pids
    with contextlib.suppress(OSError):
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                    pids.append(int(proc.name))
    return sorted(pids)


def run_workers(host: str, port: int, workers: int, log_level: str = "warning") -> None:
    """Start `workers` processes on host:port and supervise them until SIGINT or SIGTERM.

    The port is bound here first (not listening: the kernel gives connections only to
    listening sockets), so a port already taken fails at once with a clear error (PortInUse,
    naming the processes that listen on it where they can be found).
    """
    guard = _claim(host, port)
    ctx = multiprocessing.get_context("spawn")
    procs: list[BaseProcess] = []
    stopping = False

    def start() -> BaseProcess:
        p = ctx.Process(target=_worker, args=(host, port, log_level, os.getpid()),
                        name="placement-worker")
        p.start()
        return p

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        procs = [start() for _ in range(workers)]
        while not stopping:
            time.sleep(0.2)
            for i, p in enumerate(procs):
                if not p.is_alive() and not stopping:
                    log.error("worker %s exited with %s; starting another", p.pid, p.exitcode)
                    _forget_metrics(p.pid)
                    time.sleep(RESTART_DELAY_S)
                    procs[i] = start()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()  # uvicorn shuts down gracefully on SIGTERM
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
            _forget_metrics(p.pid)
        guard.close()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _forget_metrics(pid: int | None) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics directory."""
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
