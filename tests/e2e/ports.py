"""Listening ports for the processes that tests and benchmarks start on 127.0.0.1.

A port that `bind(port 0)` returned and that was then closed is free only for a
moment: the kernel hands ports from the same *ephemeral* range to every outgoing
connection (Envoy to its upstreams and to the control plane, the tests' own
clients), so a listener started a second later can find its port taken (Envoy
NACKs its listener with "cannot bind ... Address already in use" and the test
fails by chance).

The ports given here come from *below* the ephemeral range
(`/proc/sys/net/ipv4/ip_local_port_range`), which outgoing connections never use.
Each one is checked free by binding it, and one process never hands out the same
port twice; each process starts at its own random point of the range, so two test
or benchmark runs at once rarely meet.
"""

from __future__ import annotations

import random
import socket
import threading

LOCALHOST = "127.0.0.1"
LOWEST = 10000


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


class _Allocator:
    def __init__(self) -> None:
        self.low = LOWEST
        self.high = _ephemeral_low()  # exclusive
        self.size = max(self.high - self.low, 0)
        self.next = random.randrange(self.size) if self.size else 0
        self.handed = 0
        self.lock = threading.Lock()

    def take(self) -> int:
        with self.lock:
            while self.handed < self.size:
                port = self.low + self.next
                self.next = (self.next + 1) % self.size
                self.handed += 1
                if _bindable(port):
                    return port
        # The range below the ephemeral ports is used up (or empty on this
        # machine): fall back to a port the kernel picks.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOCALHOST, 0))
            return s.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


_ALLOCATOR = _Allocator()


def free_port() -> int:
    """A port on 127.0.0.1 that is free now, outside the ephemeral range, and not
    handed out before by this process."""
    return _ALLOCATOR.take()


def free_ports(n: int) -> list[int]:
    """n distinct such ports."""
    return [free_port() for _ in range(n)]
