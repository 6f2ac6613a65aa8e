"""Small helpers shared by the benchmark scripts (not a test module, not part of the app)."""

from __future__ import annotations

import json
import platform
import re
import resource
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `.venv/bin/python bench/NAME.py` from anywhere
    sys.path.insert(0, str(ROOT))


def clean_up_on_sigterm() -> None:
    """A bench stopped with SIGTERM (``pkill``, a time-out) unwinds as on Ctrl-C, so its
    ``finally`` blocks stop the ``relais`` processes it started (else they keep polling)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        # other work on the machine inflates wall-clock figures: recorded with each run
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def emit(result: dict[str, Any], as_json: bool, summary: list[str]) -> None:
    """Print either one JSON object or the human summary lines."""
    if as_json:
        print(json.dumps(result, sort_keys=True))
    else:
        print("\n".join(summary))


class MailSink:
    """An SMTP server on loopback, in this process, that only counts: each mail's Message-ID
    is read off the raw bytes (the demo's mail catcher parses every mail with the email
    package, which costs the machine's cores more than the sending does).

    ``port = await sink.start()``; ``sink.message_ids`` (arrival order); ``await sink.stop()``."""

    _MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)

    def __init__(self) -> None:
        self.message_ids: list[bytes] = []
        self.sizes: list[int] = []  # bytes of each mail, as received
        self._server: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content or b""
        self.sizes.append(len(raw))
        found = self._MESSAGE_ID.search(raw)
        self.message_ids.append(found.group(1) if found else b"")
        return "250 OK"

    async def start(self) -> int:
        import asyncio

        from aiosmtpd.smtp import SMTP

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: SMTP(self, loop=loop, decode_data=False), "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()
