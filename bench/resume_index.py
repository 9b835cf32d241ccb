"""The resume state of a very large export, without running it: a synthetic audit log of N
written inputs, then what a rerun does with it.

    python -m bench.resume_index [--inputs N] [--folder DIR]

Writes ``DIR/audit.jsonl`` with :class:`~anonymizer.pipeline.audit.AuditLog` (N file records
of the mirror layout's size, 50 distinct tag lists), then, in a fresh process each (so that
each peak RSS is its own): loads it as a run does (:meth:`PreviousRuns.load` and
:meth:`PreviousRuns.claims`) and looks every input up once (the "already done" check),
and compacts it. Prints CPU seconds, lookups per CPU second and the peak RSS of each.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TAG_LISTS = 50


def write_log(path: Path, inputs: int) -> None:
    from anonymizer.pipeline.audit import AuditLog

    lists = [[["(0010,0010)", "Z"], ["(0010,0020)", "Z"], ["(0008,0050)", "Z"],
              ["(0008,1140)>(0008,1155)", "U"], ["(0020,000d)", "U"]] + [[f"(0009,{n:04x})", "X"]]
             for n in range(TAG_LISTS)]
    log = AuditLog(path)
    log.write({"type": "run_start", "profile_sha256": "p", "key_fingerprint": "k",
               "layout": "mirror"})
    for number in range(inputs):
        log.write({"type": "file", "input": f"{number:032x}", "status": "written",
                   "reason": None, "output": f"copy{number % 10}/PATIENT_{number % 997:05d}/"
                                             f"STUDY_{number % 4001:06d}/IM{number:07d}.dcm",
                   "input_sha256": f"{number * 7919:064x}",
                   "output_sha256": f"{number * 104729:064x}",
                   "counts": {"X": 40, "Z": 12, "U": 9, "D": 3, "K": 20},
                   "tags": lists[number % TAG_LISTS], "warnings": []})
        if number % 10000 == 9999:
            log.flush()
    log.write({"type": "run_end", "counts": {"written": inputs}})
    log.close()


def _load_and_look_up(path: Path) -> dict:
    from anonymizer.pipeline.resume import PreviousRuns

    started = time.process_time()
    previous = PreviousRuns.load(path)
    claims = previous.claims()
    loaded = time.process_time() - started
    count = len(previous.latest)
    started = time.process_time()
    found = 0
    for number in range(count):
        done = previous.latest.get(f"{number:032x}")
        found += done is not None and done.status == "written"
    looked_up = time.process_time() - started
    assert found == count and len(claims) == count
    previous.close()
    return {"inputs": count, "load_cpu_s": round(loaded, 2),
            "lookup_cpu_s": round(looked_up, 2),
            "lookups_per_cpu_s": round(count / looked_up) if looked_up else None,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _compact(path: Path) -> dict:
    from anonymizer.pipeline.resume import compact

    started = time.process_time()
    compact(path)
    return {"compact_cpu_s": round(time.process_time() - started, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _in_fresh_process(step: str, path: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.resume_index", "--step", step,
                           "--log", str(path)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resume_index",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=1000000)
    parser.add_argument("--folder", type=Path, help="where the log goes (default: a "
                                                    "temporary folder, removed after)")
    parser.add_argument("--step", choices=("load", "compact"), help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        print(json.dumps(_load_and_look_up(args.log) if args.step == "load"
                         else _compact(args.log)))
        return 0
    with tempfile.TemporaryDirectory(prefix=".bench-resume-",
                                     dir=args.folder) as folder:
        path = Path(folder) / "audit.jsonl"
        started = time.process_time()
        write_log(path, args.inputs)
        size = path.stat().st_size
        print(f"log: {args.inputs} inputs, {size / 1e6:.1f} MB ({size / args.inputs:.0f} B per "
              f"input), written in {time.process_time() - started:.1f} CPU s", flush=True)
        print("load + claims + one lookup per input:", json.dumps(
            _in_fresh_process("load", path)), flush=True)
        print("compact:", json.dumps(_in_fresh_process("compact", path)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
