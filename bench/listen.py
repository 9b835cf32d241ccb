"""The gateway's throughput: pynetdicom senders -> ``anonymizer listen`` -> a folder or a
network destination.

    python -m bench.listen --key-file K [--profile P] [--jobs N] [--associations A] IN OUT

OUT is a folder, or a URL as listen's DEST (``dicomweb+http://...``, ``dimse://...``; its
credentials from ``$NETRC``). Starts ``anonymizer listen`` on a free loopback port (its
spool beside a folder OUT, else in a temporary folder; removed at the end), sends every
file under IN (sorted) over A concurrent associations (default 2), each file's dataset
bytes as they are (pynetdicom's chunked send), waits until the gateway's ``--metrics``
file counts every instance forwarded, then stops it with SIGTERM. Prints one line:
instances/s from the first C-STORE to the last instance forwarded, the seconds the senders
took, the largest spool backlog seen while they sent, and the peak RSS (VmHWM) of the
gateway's main process and of its largest worker. Exit status 0 only when every
instance was forwarded and the gateway exited 143.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config

TIMEOUT = 3600.0


def _hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _start(arguments: argparse.Namespace, out: str, spool: Path, metrics: Path,
           log: Path) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "anonymizer", "listen", "--profile", arguments.profile,
               "--key-file", arguments.key_file, "--jobs", str(arguments.jobs), "--port", "0",
               "--bind", "127.0.0.1", "--ae-title", "GATEWAY", "--spool", str(spool),
               "--metrics", str(metrics), "--status-interval", "0", out]
    with open(log, "w") as stderr:  # the child keeps its own descriptor
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = log.read_text()
        if " on 127.0.0.1:" in text:
            return process, int(text.split(" on 127.0.0.1:")[1].split(";")[0].split()[0])
        if process.poll() is not None:
            sys.exit(f"listen exited {process.returncode}: {text.strip()}")
        time.sleep(0.05)
    process.kill()
    sys.exit("listen did not start")


def _send(port: int, files: list[Path], contexts: set[tuple[str, str]],
          failures: list[str]) -> None:
    """Send ``files`` on one association; like a real sender, an instance left unanswered
    by an association that died (pynetdicom's SCU can lose an answer to its own reactor
    thread on a loaded machine) is sent again on a new one."""
    ae = AE(ae_title="BENCH")
    for sop_class, syntax in sorted(contexts):
        ae.add_requested_context(sop_class, syntax)
    assoc = None
    for path in files:
        answer = None
        for _ in range(3):
            if assoc is None or not assoc.is_established:
                assoc = ae.associate("127.0.0.1", port, ae_title="GATEWAY")
            try:
                answer = assoc.send_c_store(path)
            except RuntimeError:  # not established, or gone
                continue
            if "Status" in answer:
                break
        if answer is None or "Status" not in answer or answer.Status != 0:
            failures.append(path.name)
    if assoc is not None and assoc.is_established:
        assoc.release()


def _forwarded(metrics: Path) -> dict:
    try:
        return json.loads(metrics.read_text())
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listen", description=__doc__)
    parser.add_argument("input", type=Path, metavar="IN")
    parser.add_argument("output", metavar="OUT", help="a folder or a network URL")
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--profile", default="basic")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--associations", type=int, default=2)
    arguments = parser.parse_args(argv)
    _config.STORE_SEND_CHUNKED_DATASET = True  # the files' bytes, not pydicom's re-encoding
    files = sorted(p for p in arguments.input.rglob("*") if p.is_file())
    metas = [read_file_meta_info(path) for path in files]
    contexts = {(str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID)) for m in metas}
    if "://" in arguments.output:
        work = Path(tempfile.mkdtemp(prefix="bench-listen-"))
    else:
        output = Path(arguments.output)
        work = output.parent / f"{output.name}-listen"
        work.mkdir(parents=True, exist_ok=True)
    metrics, log = work / "metrics.json", work / "listen.log"
    process, port = _start(arguments, arguments.output, work / "spool", metrics, log)
    failures: list[str] = []
    started = time.monotonic()
    share = arguments.associations
    senders = [threading.Thread(target=_send, args=(port, files[i::share], contexts, failures))
               for i in range(share)]
    for sender in senders:
        sender.start()
    backlog = 0  # the most instances seen waiting in the spool
    while any(sender.is_alive() for sender in senders):
        backlog = max(backlog, _forwarded(metrics).get("queue", 0))
        time.sleep(0.2)
    sent = time.monotonic() - started
    deadline = time.monotonic() + TIMEOUT
    while (counts := _forwarded(metrics)).get("forwarded", 0) + counts.get("failed", 0) \
            < len(files) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    main_kib = _hwm_kib(process.pid)
    worker_kib = max((_hwm_kib(child) for child in _children(process.pid)), default=0)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=120)
    shutil.rmtree(work, ignore_errors=True)
    ok = code == 143 and not failures and counts.get("forwarded") == len(files)
    print(f"listen: {len(files)} instances in {elapsed:.2f} s: {len(files) / elapsed:.1f} "
          f"instances/s (senders done at {sent:.2f} s, spool backlog up to {backlog}); "
          f"gateway peak RSS {main_kib / 1024:.0f} "
          f"MiB, largest worker {worker_kib / 1024:.0f} MiB; "
          f"{'ok' if ok else f'FAILED: exit {code}, {counts}, {len(failures)} refused'}",
          flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
