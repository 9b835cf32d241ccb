"""Run the anonymizer CLI in this process and report the parent's own figures.

    python -m bench.parent --report FILE [--watch OUT] -- ARG ...

Writes one JSON line to FILE when the command ends: ``parent_peak_rss_kib`` (``ru_maxrss``
of this process alone: the run's parent, not its workers) and, with ``--watch``,
``first_output_s``: seconds from the start of this process until the first output file
appeared in OUT (a ``.dcm`` not named as a temporary; a thread looks every 10 ms and stops
at the first).
"""

from __future__ import annotations

import time

STARTED = time.monotonic()

import argparse  # noqa: E402 - the clock starts before the imports
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

TEMP_PREFIX = ".anonymizer-tmp-"


def _first_output(out: Path, found: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        for _folder, folders, names in os.walk(out):
            folders[:] = [name for name in folders if not name.startswith(TEMP_PREFIX)]
            if any(name.endswith(".dcm") and not name.startswith(TEMP_PREFIX)
                   for name in names):
                found.append(time.monotonic() - STARTED)
                return
        stop.wait(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parent")
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--watch", type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    found: list[float] = []
    stop = threading.Event()
    if args.watch is not None:
        threading.Thread(target=_first_output, args=(args.watch, found, stop),
                         daemon=True).start()
    from anonymizer.cli import main as cli

    try:
        return cli(command)
    finally:
        stop.set()
        report = {"parent_peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "first_output_s": round(found[0], 3) if found else None}
        args.report.write_text(json.dumps(report) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
