"""The end-to-end benchmark's SMTP server (aiosmtpd), in a process of its own so that the
feeder's work does not delay its clock: one line per accepted message, ``<unix time>
<X-Vigil-Signal-Id> <Message-ID>``, written when the server answers DATA."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path
from typing import IO, Any

from aiosmtpd.controller import Controller


class Stamping:
    def __init__(self, out: IO[str]) -> None:
        self._out = out

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        accepted = time.time()
        content: bytes = envelope.original_content or envelope.content
        head = content.split(b"\r\n\r\n", 1)[0]
        found = {b"x-vigil-signal-id": "-", b"message-id": "-"}
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() in found:
                found[name.lower()] = value.strip().decode()
        signal_id, message_id = found[b"x-vigil-signal-id"], found[b"message-id"]
        self._out.write(f"{accepted:.6f} {signal_id} {message_id}\n")
        self._out.flush()
        return "250 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with args.out.open("a") as out:
        controller = Controller(Stamping(out), hostname="127.0.0.1", port=args.port)
        controller.start()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        print("ready", flush=True)
        stop.wait()
        controller.stop()


if __name__ == "__main__":
    main()
