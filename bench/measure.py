"""Run one command; print its wall time, CPU time and peak memory as one JSON line.

    python -m bench.measure [--log FILE] [--interval S] -- COMMAND [ARG ...]

:mod:`bench.run` starts this helper afresh for every measured command, so that
``getrusage(RUSAGE_CHILDREN)`` covers that command and its descendants only (in a long-lived
process it would be the maximum over every child ever waited for).

- ``seconds``: wall time from spawning the command to its exit (interpreter start-up,
  imports and worker start-up included: what a user waits for).
- ``max_rss_kib``: ``ru_maxrss`` of RUSAGE_CHILDREN, i.e. the peak RSS of the *largest single
  process* among the command and its waited-for descendants (Linux semantics; not a sum).
  Its floor is this helper's own RSS (``helper_hwm_kib``, ~13 MiB): Linux keeps the high-water
  mark of the forking process across exec, so tiny commands such as ``cp`` read ~13 MiB.
  The helper makes itself a child subreaper, so worker processes that outlive their parent
  are re-parented here, reaped, and counted too.
- ``sampled_hwm_kib``: the largest ``VmHWM`` (per-process peak RSS) seen while sampling
  ``/proc`` every ``--interval`` seconds; a cross-check of the above.
- ``sampled_tree_rss_kib``: the largest sum of ``VmRSS`` over the whole process tree at one
  sample. Pages shared between processes (fork copy-on-write, shared libraries) are counted
  once per process, so this is an upper bound of the tree's footprint; short peaks between
  samples are missed.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        parents[int(entry)] = int(fields[1])
    return parents


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB; zeros when it is gone or a zombie."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, hwm


class _Sampler(threading.Thread):
    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.stop = threading.Event()
        self.tree_rss = self.hwm = self.processes = self.samples = 0

    def sample(self) -> None:
        total = 0
        pids = _descendants(os.getpid())
        for pid in pids:
            rss, hwm = _memory_kib(pid)
            total += rss
            self.hwm = max(self.hwm, hwm)
        self.tree_rss = max(self.tree_rss, total)
        self.processes = max(self.processes, len(pids))
        self.samples += 1

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.sample()


def _reap_orphans(deadline: float) -> int:
    """Wait for re-parented descendants (e.g. pool workers still shutting down)."""
    reaped = 0
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            reaped += 1
        else:
            time.sleep(0.02)
    return reaped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.measure")
    parser.add_argument("--log", help="file for the command's stdout and stderr")
    parser.add_argument("--interval", type=float, default=0.1, help="/proc sampling period")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")
    subreaper = _become_subreaper()
    # Linux carries the RSS high-water mark of the forking process into the child's
    # ru_maxrss at exec: this helper's own peak is the floor of every max_rss_kib.
    floor = _memory_kib(os.getpid())[1]
    sampler = _Sampler(args.interval)
    log = open(args.log, "wb") if args.log else subprocess.DEVNULL  # noqa: SIM115
    try:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT)
        sampler.start()
        exit_code = process.wait()
        seconds = time.perf_counter() - started
        sampler.stop.set()
        sampler.join()
        orphans = _reap_orphans(time.monotonic() + 60)
    finally:
        if args.log:
            log.close()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({
        "seconds": round(seconds, 4),
        "exit_code": exit_code,
        "max_rss_kib": usage.ru_maxrss,
        "helper_hwm_kib": floor,
        "sampled_hwm_kib": sampler.hwm,
        "sampled_tree_rss_kib": sampler.tree_rss,
        "max_processes": sampler.processes,
        "samples": sampler.samples,
        "user_s": round(usage.ru_utime, 3),
        "sys_s": round(usage.ru_stime, 3),
        "orphans_reaped": orphans,
        "subreaper": subreaper,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
