"""What bench/run.py and bench/soak.py share: the processes they start, each stopped by
its own pid, and free loopback ports. Python 3.11 standard library only."""

from __future__ import annotations

import signal
import socket
import subprocess
from typing import Callable

HOST = "127.0.0.1"


class Procs:
    """Processes started by a script; `stop_all` ends each one by its own pid."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` s; returns the exit code."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in list(self.procs):
            try:
                self.stop(proc)
            except Exception as err:  # keep stopping the others
                self.log(f"could not stop pid {proc.pid}: {err}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]
