"""Run the API in several worker processes, each with its own listening socket.

With one shared socket (uvicorn's `workers=`), whichever process wakes first accepts a burst
of new connections, and keep-alive clients stay where they landed: one worker can carry nearly
every client while the other idles. Here each worker binds the port with SO_REUSEPORT and the
kernel spreads connections over the workers by a hash of their addresses. A worker that dies
is started again.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from types import FrameType

log = logging.getLogger("placement.serving")
APP = "api.main:app"
RESTART_DELAY_S = 1.0


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


def _worker(host: str, port: int, log_level: str) -> None:
    import uvicorn

    sock = _socket(host, port, listen=True)
    server = uvicorn.Server(uvicorn.Config(APP, log_level=log_level))
    server.run(sockets=[sock])


def run_workers(host: str, port: int, workers: int, log_level: str = "warning") -> None:
    """Start `workers` processes on host:port and supervise them until SIGINT or SIGTERM.

    The port is bound here first (not listening: the kernel gives connections only to
    listening sockets), so a port already taken fails at once with a clear error.
    """
    guard = _socket(host, port, listen=False)
    ctx = multiprocessing.get_context("spawn")
    procs: list[BaseProcess] = []
    stopping = False

    def start() -> BaseProcess:
        p = ctx.Process(target=_worker, args=(host, port, log_level), name="placement-worker")
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
    import os

    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
