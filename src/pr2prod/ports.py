"""A free TCP port on the loopback interface, for servers the project starts itself."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    # The OS picks an unused port; there is a short window before the server binds it.
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
