"""Benchmark ``anonymizer run`` against the I/O limit (``cp -r``) and the parse limit (pydicom).

    python -m bench.run [--quick] [--files N] [--frames F] [--skip-huge] [--ultrasound N]
                        [--baseline REF] [--jobs N] [--listen N] [--network N] [--repeat K]
                        [--scale N] [--scale-dask N]

Builds (or reuses) the cached corpus of :mod:`bench.corpus`, then measures, one after the
other and each in a fresh :mod:`bench.measure` helper process (with ``--repeat K``, in K
rounds that each run every command of a group once: the median of a row is taken over the
same stretch of time as its neighbours'):

1. ``cp -r`` of the single-frame tree;
2. ``python -m bench.noop`` (pydicom read + write of every file) at 1 process, then
   ``anonymizer run`` with the ``basic`` and ``research`` profiles at ``--jobs 1``;
3. the no-op at N processes, ``anonymizer run`` with ``research`` and ``basic`` at N jobs
   (taking turns to run first, round by round), and the no-op at N processes again: the
   goals' reference brackets the rows it judges;

and, on a folder holding only the multi-frame file (>= 1 GiB of Pixel Data): ``cp -r``, the
pydicom no-op and ``anonymizer run --profile research --jobs 1``, checking that the Pixel Data
value bytes of each output hash the same as the input's, then ``research`` plus a region rule
that blanks a bar of every frame (the frame-by-frame cleaning path; its peak RSS is the
point). Then ``anonymizer listen`` to a folder (``--listen``) and the network paths
(``--network``: a PACS and an archive, two Orthancs on loopback; ``run`` folder -> folder,
WADO-RS and C-GET -> folder, folder -> STOW-RS and C-STORE; ``listen`` -> the archive).

Prints a table and writes ``bench/results/bench-<UTC timestamp>.json`` and
``bench/results/latest.json``. Nothing is asserted about timings: the JSON is the record.
Outputs go to a temporary folder under ``bench/corpus/`` (same filesystem) and are deleted
after each measurement; the page cache is not dropped (the input is read once before
measuring, so every command reads from cache).
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import corpus, goals

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
FULL_FILES = 5000
FULL_FRAMES = 2048  # 2048 x 512 x 512 x 2 bytes = 1 GiB of Pixel Data
QUICK_FILES = 500
QUICK_FRAMES = 128  # 64 MiB
FULL_SCALE = 200000  # tiny files of the scale rows (bench.scale)
#: the corpus of few files per patient (a radiography export): its files, and per patient
FULL_FEW, QUICK_FEW, FEW_PER_PATIENT = 1000, 200, 5
QUICK_SCALE = 5000
#: rounds of the single-frame table at least (its ratios to pydicom are the goals, judged on
#: the median of the rounds: one round in a slow spell of the VM would decide alone)
GOAL_ROUNDS = 3
MiB = 1 << 20


@dataclass
class Row:
    """One measured command (the median of its repeats by wall time)."""

    name: str
    kind: str  # cp | pydicom-noop | pydicom-noop-again | pydicom-noop-sha256 | anonymizer...
    procs: int
    files: int
    bytes: int
    command: list[str]
    seconds: float = 0.0
    files_per_s: float = 0.0
    mb_per_s: float = 0.0
    peak_rss_mib: float = 0.0  # largest single process
    tree_rss_mib: float = 0.0  # sampled sum over the process tree
    cpu_s: float = 0.0
    background_cpu_s: float = 0.0  # CPU seconds other processes used meanwhile
    check: str = ""
    ratio_vs_cp: float | None = None
    ratio_vs_noop: float | None = None
    profile: str | None = None
    exit_code: int = 0  # what the command must exit with (1: some inputs fail by design)
    #: CPU ms per file by stage, from the audit log's run_end ``timings`` (anonymizer run)
    timings: dict[str, float] | None = None
    repeats: list[dict] = field(default_factory=list)
    # scale rows (bench.scale): the run's parent process alone, and what it wrote
    parent_rss_mib: float | None = None
    first_output_s: float | None = None
    audit_bytes_per_file: float | None = None
    dask_overhead_ms_per_file: float | None = None


def _anonymizer() -> str:
    local = Path(sys.executable).parent / "anonymizer"
    return str(local) if local.exists() else shutil.which("anonymizer") or "anonymizer"


def _measure(command: list[str], log: Path) -> dict:
    """Run ``command`` in a fresh bench.measure helper; return its JSON report."""
    helper = [sys.executable, "-m", "bench.measure", "--log", str(log), "--", *command]
    done = subprocess.run(helper, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _busy_cpu_seconds() -> float:
    """Machine-wide non-idle CPU seconds so far (/proc/stat), 0.0 where unavailable."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _count_files(tree: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(tree))


def _tail(log: Path, lines: int = 3) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _check_copy(expected: int) -> Callable[[Path, Path], str]:
    def check(out: Path, log: Path) -> str:
        found = _count_files(out)
        return "ok" if found == expected else f"FAILED: {found} of {expected} files"
    return check


def _check_anonymizer(expected: int, pixel: tuple[str, int] | None = None
                      ) -> Callable[[Path, Path], str]:
    """Every input written (audit log run_end counts, files on disk); optionally the Pixel
    Data of the single output hashes to ``pixel`` = (sha256, length)."""
    def check(out: Path, log: Path) -> str:
        counts = _run_end_counts(out)
        if isinstance(counts, str):
            return counts
        written = sum(name.endswith(".dcm") for _, _, names in os.walk(out) for name in names)
        if counts.get("written") != expected or written != expected:
            return f"FAILED: {counts} / {written} files on disk; {_tail(log)}"
        return _check_pixels(out, pixel) if pixel else "ok"
    return check


def _run_end_timings(out: Path) -> dict[str, float] | None:
    """The ``timings`` of the audit log's last ``run_end`` record (CPU seconds by stage)."""
    timings = None
    try:
        for line in (out / "audit.jsonl").read_text().splitlines():
            record = json.loads(line)
            if record.get("type") == "run_end":
                timings = record.get("timings")
    except (OSError, ValueError):
        return None
    return timings


#: the stages of ``timings``: in the worker, then in the committing (main) process
WORKER_STAGES = ("read", "parse", "deidentify", "write", "worker_other")
PARENT_STAGES = ("sync", "commit", "audit", "progress", "dispatch")


def outside_ms(timings: dict[str, float]) -> float:
    """CPU ms per file the main process spent outside the workers (``timings`` per file)."""
    return sum(timings.get(stage, 0.0) for stage in PARENT_STAGES)


def _breakdown(rows: list[Row]) -> str:
    """CPU ms per file by stage of every row whose audit log gave timings."""
    stages = (*WORKER_STAGES, *PARENT_STAGES)
    header = (f"{'CPU ms per file':<28} " + " ".join(f"{s[:10]:>10}" for s in stages)
              + f" {'outside':>8}")
    lines = [header, "-" * len(header)]
    for row in rows:
        if not row.timings:
            continue
        lines.append(f"{row.name:<28} " + " ".join(f"{row.timings.get(s, 0.0):>10.3f}"
                                                   for s in stages)
                     + f" {outside_ms(row.timings):>8.3f}")
    return "\n".join(lines) if len(lines) > 2 else ""


def _run_end_counts(out: Path) -> dict | str:
    """The counts of the audit log's last ``run_end`` record, or why there are none."""
    counts: dict = {}
    try:
        for line in (out / "audit.jsonl").read_text().splitlines():
            record = json.loads(line)
            if record.get("type") == "run_end":
                counts = record.get("counts", {})
    except (OSError, ValueError) as exc:
        return f"FAILED: no audit log ({exc})"
    return counts


def _check_pixels(out: Path, pixel: tuple[str, int]) -> str:
    """The single .dcm under ``out`` carries exactly the input's Pixel Data bytes."""
    outputs = [Path(folder, name) for folder, _, names in os.walk(out) for name in names
               if name.endswith(".dcm")]
    if len(outputs) != 1:
        return f"FAILED: {len(outputs)} output files"
    offset, length = corpus.pixel_data_region(outputs[0])
    if length != pixel[1]:
        return f"FAILED: Pixel Data length {length} != {pixel[1]}"
    digest = corpus.sha256_region(outputs[0], offset, length)
    return "ok, pixels bit-exact" if digest == pixel[0] else "FAILED: Pixel Data differs"


def _sample(row: Row, out: Path, check: Callable[[Path, Path], str]) -> dict:
    """One measurement of ``row``'s command (its output checked, then deleted)."""
    shutil.rmtree(out, ignore_errors=True)
    log = out.with_suffix(".log")
    busy = _busy_cpu_seconds()
    report = _measure([part.replace("{out}", out.as_posix()) for part in row.command], log)
    busy = _busy_cpu_seconds() - busy
    # CPU time the rest of the machine used meanwhile (this helper's sampling included).
    report["background_cpu_s"] = round(max(0.0, busy - report["user_s"] - report["sys_s"]), 2)
    report["check"] = check(out, log) if report["exit_code"] == row.exit_code else \
        f"FAILED: exit {report['exit_code']}; {_tail(log)}"
    if row.kind in ("anonymizer", "baseline"):
        report["timings"] = _run_end_timings(out)
    shutil.rmtree(out, ignore_errors=True)
    return report


def _run_rows(plan: list[tuple[Row, Callable[[Path, Path], str]]], out: Path,
              repeat: int) -> list[Row]:
    """Measure every command of ``plan`` ``repeat`` times, in rounds: each round runs every
    command once, so that a slow spell of a shared machine (seconds to minutes) falls on
    all of them rather than on the repeats of one, and the ratios between rows hold."""
    samples: list[list[dict]] = [[] for _ in plan]
    rows = [row for row, _ in plan]
    for round_number in range(repeat):
        if repeat > 1:
            print(f"  round {round_number + 1} of {repeat}", flush=True)
        for index in round_order(rows, round_number):
            row, check = plan[index]
            samples[index].append(_sample(row, out, check))
    return [_summarise(row, taken) for (row, _), taken in zip(plan, samples, strict=True)]


def round_order(rows: list[Row], round_number: int) -> list[int]:
    """The order in which round ``round_number`` runs ``rows`` (their indices): as listed,
    except the rows between pydicom's copy and its second run (``again``), which rotate by
    one place each round. Each of them then runs first after pydicom's first run in turn:
    a row right after a stretch of both cores busy may run slower than one after a rest."""
    first = next((i for i, row in enumerate(rows) if row.kind == goals.NOOP_AGAIN), None)
    before = None if first is None else max(
        (i for i, row in enumerate(rows[:first])
         if row.kind == goals.NOOP and row.procs == rows[first].procs), default=None)
    if first is None or before is None:
        return list(range(len(rows)))
    start = before + 1
    inner = list(range(start, first))
    shift = round_number % len(inner) if inner else 0
    return [*range(start), *inner[shift:], *inner[:shift], *range(first, len(rows))]


def _summarise(row: Row, samples: list[dict]) -> Row:
    """``row`` filled from its samples: the median by wall time (every sample kept)."""
    chosen = sorted(samples, key=lambda s: s["seconds"])[len(samples) // 2]
    row.seconds = chosen["seconds"]
    row.files_per_s = round(row.files / row.seconds, 2)
    row.mb_per_s = round(row.bytes / 1e6 / row.seconds, 2)
    row.peak_rss_mib = round(max(chosen["max_rss_kib"], chosen["sampled_hwm_kib"]) / 1024, 1)
    row.tree_rss_mib = round(chosen["sampled_tree_rss_kib"] / 1024, 1)
    row.cpu_s = round(chosen["user_s"] + chosen["sys_s"], 3)
    row.background_cpu_s = chosen["background_cpu_s"]
    row.exit_code = chosen["exit_code"]
    if chosen.get("timings"):
        row.timings = {stage: round(seconds / row.files * 1e3, 4)
                       for stage, seconds in chosen["timings"].items()}
    bad = [s["check"] for s in samples if not s["check"].startswith("ok")]
    row.check = bad[0] if bad else chosen["check"]
    row.repeats = samples
    if len(samples) > 1:
        row.check += f" (median of {len(samples)}: " + ", ".join(
            f"{s['seconds']:.2f}" for s in samples) + " s)"
    print(f"  {row.name:<28} {row.seconds:8.2f} s  {row.peak_rss_mib:8.1f} MiB  {row.check}",
          flush=True)
    return row


def _ratios(rows: list[Row]) -> None:
    cp = next((r for r in rows if r.kind == "cp"), None)
    noop = {r.procs: r for r in rows if r.kind == goals.NOOP}
    for row in rows:
        if cp is not None:
            row.ratio_vs_cp = round(row.seconds / cp.seconds, 2)
        if row.kind != "cp" and row.procs in noop:
            row.ratio_vs_noop = round(row.seconds / noop[row.procs].seconds, 2)


def _table(rows: list[Row]) -> str:
    header = (f"{'command':<28} {'procs':>5} {'files':>6} {'seconds':>8} {'files/s':>8} "
              f"{'MB/s':>7} {'peak RSS':>9} {'sum RSS':>8} {'CPU':>7} {'bg CPU':>7} "
              f"{'x cp':>6} {'x noop':>6}  check")
    lines = [header, f"{'':<28} {'':>5} {'':>6} {'':>8} {'':>8} {'':>7} {'MiB':>9} "
                     f"{'MiB':>8} {'s':>7} {'s':>7}", "-" * len(header)]
    for r in rows:
        def ratio(value: float | None) -> str:
            return f"{value:6.2f}" if value is not None else f"{'-':>6}"
        lines.append(f"{r.name:<28} {r.procs:>5} {r.files:>6} {r.seconds:>8.2f} "
                     f"{r.files_per_s:>8.1f} {r.mb_per_s:>7.1f} {r.peak_rss_mib:>9.1f} "
                     f"{r.tree_rss_mib:>8.1f} {r.cpu_s:>7.1f} {r.background_cpu_s:>7.1f} "
                     f"{ratio(r.ratio_vs_cp)} {ratio(r.ratio_vs_noop)}"
                     f"  {r.check}")
    return "\n".join(lines)


def _warm(tree: Path) -> tuple[int, float]:
    """Read every file once (page cache warm for every measured command)."""
    started, total = time.perf_counter(), 0
    for folder, _, names in os.walk(tree):
        for name in names:
            with open(os.path.join(folder, name), "rb") as handle:
                while chunk := handle.read(8 * MiB):
                    total += len(chunk)
    return total, time.perf_counter() - started


def _environment(jobs: int) -> dict:
    meminfo = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, value = line.split(":", 1)
            meminfo[key] = value.strip()
    except OSError:
        pass

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "jobs": jobs, "memory": meminfo.get("MemTotal"),
            "pydicom": version("pydicom"), "anonymizer": version("anonymizer"),
            "joblib": version("joblib"), "loadavg_at_start": os.getloadavg()}


def _free_disk_check(files: int, frames: int) -> None:
    """Refuse to start when the corpus plus one output copy would not fit."""
    need = 0
    for path, size in ((corpus.CORPUS_ROOT / f"sf-{files}", files * 0.34e6),
                       (corpus.CORPUS_ROOT / f"mf-{frames}f", frames * 0.53e6)):
        need += size * (1 if path.exists() else 2)
    corpus.CORPUS_ROOT.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(corpus.CORPUS_ROOT).free
    if free < need + 1e9:
        sys.exit(f"bench: {free / 1e9:.1f} GB free under {corpus.CORPUS_ROOT}, "
                 f"need about {need / 1e9 + 1:.1f} GB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_FILES} files, a {QUICK_FRAMES // 2} MiB "
                             "multi-frame file")
    parser.add_argument("--files", type=int, help=f"single-frame files (default {FULL_FILES})")
    parser.add_argument("--frames", type=int,
                        help=f"frames of the multi-frame file (default {FULL_FRAMES} = 1 GiB)")
    parser.add_argument("--skip-huge", action="store_true", help="no multi-frame measurements")
    parser.add_argument("--ultrasound", type=int, default=200,
                        help="ultrasound images added to the CT/MR corpus for the mixed "
                             "(burned-in text) measurement, half with text drawn in "
                             "(default 200; 0 = skip)")
    parser.add_argument("--baseline", metavar="REF",
                        help="also run git revision REF's research profile on the same "
                             "corpora, side by side (e.g. the commit before a change)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="N, the process count of the parallel runs (default: cpu count)")
    parser.add_argument("--listen", type=int, default=1000, metavar="N",
                        help="send N of the single-frame files through anonymizer listen "
                             "(default 1000; 0 = skip)")
    parser.add_argument("--network", type=int, default=300, metavar="N",
                        help="load N single-frame files into a loopback Orthanc (a PACS) and "
                             "measure run's and listen's network paths against a second "
                             "Orthanc (an archive) (default 300; 0 = skip; skipped when "
                             "Orthanc is not installed)")
    parser.add_argument("--scale", type=int, metavar="N",
                        help="discovery, commit and resume of N tiny files, and N/4 "
                             "(bench.scale: the parent's peak RSS, time to first output; "
                             f"default {FULL_SCALE}, {QUICK_SCALE} with --quick; 0 = skip)")
    parser.add_argument("--scale-dask", type=int, default=20000, metavar="N",
                        help="the local and the Dask backend (LocalCluster, --jobs workers) "
                             "on N of the tiny files (default 20000; 0 = skip)")
    parser.add_argument("--few-per-patient", type=int, metavar="N",
                        help=f"research and pydicom on N files of about {FEW_PER_PATIENT} per "
                             f"patient (default {FULL_FEW}; {QUICK_FEW} with --quick; 0 "
                             "skips them)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per command; the median by wall time is reported (the "
                             f"single-frame table runs at least {GOAL_ROUNDS} rounds)")
    args = parser.parse_args(argv)
    files = args.files or (QUICK_FILES if args.quick else FULL_FILES)
    frames = args.frames or (QUICK_FRAMES if args.quick else FULL_FRAMES)
    jobs, repeat = max(1, args.jobs), max(1, args.repeat)
    # the throughput goals are ratios paired by round: never judged on one round
    single_rounds = max(repeat, GOAL_ROUNDS)
    _free_disk_check(files, 0 if args.skip_huge else frames)

    started = time.perf_counter()
    single = corpus.single_frame(files)
    huge = None if args.skip_huge else corpus.multi_frame(frames)
    stamp = single.stamp
    print(f"corpus: {stamp['files']} files ({stamp['ct_files']} CT, {stamp['mr_files']} MR) "
          f"in {stamp['patients']} patients / {stamp['studies']} studies / {stamp['series']} "
          f"series, {stamp['bytes'] / 1e6:.0f} MB; "
          f"{'built' if single.built else 'cached, built'} in {stamp['build_seconds']:.1f} s")
    if huge is not None:
        print(f"multi-frame: {huge.stamp['frames']} frames, {huge.stamp['bytes'] / MiB:.0f} MiB; "
              f"{'built' if huge.built else 'cached, built'} in "
              f"{huge.stamp['build_seconds']:.1f} s")

    tmp = Path(tempfile.mkdtemp(prefix=".bench-tmp-", dir=corpus.CORPUS_ROOT))
    try:
        key = tmp / "key"
        subprocess.run([_anonymizer(), "keygen", str(key)], check=True, capture_output=True)
        warm_bytes, warm_s = _warm(single.tree)
        print(f"warm-up: read {warm_bytes / 1e6:.0f} MB in {warm_s:.1f} s (page cache not "
              "dropped; every command below reads from cache)")
        baseline = _baseline(args.baseline) if args.baseline else None
        _compile_bytecode(REPO / "anonymizer", *([baseline[1]] if baseline else []))
        rows = _single_frame_rows(single, tmp, key, jobs, single_rounds, baseline)
        few_files = args.few_per_patient if args.few_per_patient is not None else (
            QUICK_FEW if args.quick else FULL_FEW)
        few = corpus.single_frame(few_files, files_per_patient=FEW_PER_PATIENT) \
            if few_files else None
        few_rows = _few_per_patient_rows(few, tmp, key, jobs, single_rounds, baseline) \
            if few is not None else []
        huge_rows = _huge_rows(huge, tmp, key, repeat) if huge is not None else []
        listen_rows = _listen_rows(single, tmp, key, jobs, args.listen, repeat) \
            if args.listen else []
        network_rows = _network_rows(args.network, tmp, key, jobs, repeat) \
            if args.network else []
        us = corpus.ultrasound(args.ultrasound) if args.ultrasound else None
        us_rows = _mixed_rows(single, us, tmp, key, jobs, repeat, baseline) \
            if us is not None else []
        scale = args.scale if args.scale is not None else (
            QUICK_SCALE if args.quick else FULL_SCALE)
        scale_rows = _scale_rows(scale, args.scale_dask, tmp, key, jobs) if scale else []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"single-frame corpus: {files} files, {stamp['bytes'] / 1e6:.0f} MB, N = {jobs}")
    print(_table(rows))
    if breakdown := _breakdown(rows):
        print()
        print("where the CPU goes (from each run's audit log; 'outside': the main process's "
              "sync, commit, audit, progress and dispatch/result transfer)")
        print(breakdown)
    if few_rows:
        print()
        print(f"few files per patient: {few.stamp['files']} single-frame files of "
              f"{few.stamp['patients']} patients ({few.stamp['studies']} studies), "
              f"{few.stamp['bytes'] / 1e6:.0f} MB, N = {jobs}: each patient's identifiers "
              "new every few files, as in a radiography or mammography export")
        print(_table(few_rows))
        print(_breakdown(few_rows))
        print(_few_per_patient_summary(few_rows, rows, jobs))
    if huge_rows:
        print()
        print(f"multi-frame file: {huge.stamp['bytes'] / MiB:.0f} MiB "
              f"({huge.stamp['frames']} frames), 1 process")
        print(_table(huge_rows))

    if listen_rows:
        print()
        print(f"gateway: {listen_rows[0].files} single-frame files sent by pynetdicom over 2 "
              f"associations through anonymizer listen -p basic to a folder, N = {jobs} "
              "(seconds: start-up to stop; the check column has the steady rate)")
        print(_table(listen_rows))
    if network_rows:
        print()
        print(f"network: {network_rows[0].files} single-frame files, anonymizer -p basic "
              f"-j{jobs}, a PACS and an archive (Orthanc on loopback, the same cores); "
              "files/s = instances/s")
        print(_table(network_rows))
    if baseline is not None:
        current = next(r for r in rows if r.name == f"anonymizer research -j{jobs}")
        before = next(r for r in rows if r.kind == "baseline")
        print(f"  research -j{jobs} CT/MR: {current.seconds / before.seconds:.3f}x the time of "
              f"baseline {baseline[0]}")
    if us_rows:
        print()
        print(f"mixed corpus: the {files} CT/MR files plus {us.stamp['files']} ultrasound "
              f"images 640x480, {us.stamp['with_text']} with a name and MRN drawn in; every "
              "ultrasound image is searched by OCR (research fails those with text, "
              "research-ocr-blank blanks it), N = {jobs}".replace("{jobs}", str(jobs)))
        print(_table(us_rows))
        # the same run on the CT/MR files alone: what the ultrasound images added
        alone = {"anonymizer": next((r for r in rows if r.kind == "anonymizer" and r.procs == jobs
                                     and r.profile == "research"), None),
                 "baseline": next((r for r in rows if r.kind == "baseline"), None)}
        for row in us_rows:
            if alone[row.kind] is None:
                continue
            extra = (row.seconds - alone[row.kind].seconds) * row.procs / us.stamp["files"]
            print(f"  {row.name}: {extra:.2f} s of a process per ultrasound image (the "
                  f"mixed run's time less the CT/MR run's)")

    if scale_rows:
        print()
        print(f"scale: tiny synthetic CT files (hard links), anonymizer -p research --layout "
              f"mirror, N = {jobs}; first run, then the rerun with nothing to do; check column: "
              "the parent process's own peak RSS, time to first output, audit log per file")
        print(_table(scale_rows))

    judged = goals.judge(rows, huge_rows, scale_rows, jobs)
    print()
    smoke = ("; a smoke run: start-up (about 0.4 s) and the small scale weigh here, judge "
             "the goals on a full run") if args.quick else ""
    print("goals (ratios to pydicom paired round by round: its seconds, run just before and "
          "just after ours (geometric mean), / ours; 'met' when the median reaches the goal)"
          + smoke)
    print(goals.table(judged))
    if hashed := goals.hashing_reference(rows, jobs):
        print("beside the goals, no goal: the same paired ratios to pydicom's copy that also "
              "hashes every input and output (sha256), as the audit log does")
        print(hashed)

    when = dt.datetime.now(dt.timezone.utc)
    record = {
        "benchmark": "anonymizer bench", "when": when.isoformat(timespec="seconds"),
        "total_seconds": round(time.perf_counter() - started, 1),
        "environment": _environment(jobs), "repeat": repeat,
        "single_frame_rounds": single_rounds,
        "notes": {"peak_rss_mib": "largest single process (ru_maxrss of RUSAGE_CHILDREN in a "
                                  "fresh helper per command, cross-checked with sampled VmHWM)",
                  "tree_rss_mib": "largest sum of VmRSS over the process tree, sampled every "
                                  "0.1 s; shared pages counted once per process",
                  "ratio_vs_cp": "seconds / seconds of cp -r on the same input",
                  "ratio_vs_noop": "seconds / seconds of the pydicom no-op at the same "
                                   "process count",
                  "page_cache": "not dropped; inputs read once before measuring",
                  "bytecode": "the package's (and the baseline's) compiled before measuring",
                  "mb": "10^6 bytes of input"},
        "corpus": {"single_frame": {**stamp, "path": str(single.tree)},
                   "few_per_patient": ({**few.stamp, "path": str(few.tree)} if few else None),
                   "multi_frame": ({**huge.stamp, "path": str(huge.tree)} if huge else None)},
        "single_frame": [asdict(r) for r in rows],
        "few_per_patient": [asdict(r) for r in few_rows],
        "multi_frame": [asdict(r) for r in huge_rows],
        "mixed": [asdict(r) for r in us_rows],
        "listen": [asdict(r) for r in listen_rows],
        "network": [asdict(r) for r in network_rows],
        "scale": [asdict(r) for r in scale_rows],
        "goals": [asdict(g) for g in judged],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=1) + "\n"
    target = RESULTS / f"bench-{when:%Y%m%dT%H%M%SZ}.json"
    target.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    print(f"\nwritten: {target.relative_to(REPO)} and bench/results/latest.json "
          f"(total {record['total_seconds']:.0f} s)")
    busy = [r.name for r in rows + few_rows + huge_rows + us_rows + listen_rows + network_rows
            + scale_rows if r.background_cpu_s > max(0.5, 0.1 * r.seconds * (os.cpu_count() or 1))]
    if busy:
        print(f"note: other processes used over 10% of the CPUs during: {', '.join(busy)} "
              "(column 'bg CPU'): those timings are contended", file=sys.stderr)
    failed = [r.name for r in rows + few_rows + huge_rows + us_rows + listen_rows
              + network_rows + scale_rows if not r.check.startswith("ok")]
    if failed:
        print(f"bench: FAILED checks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _scale_rows(files: int, dask_files: int, tmp: Path, key: Path, jobs: int) -> list[Row]:
    from bench.scale import scale_rows  # bench.scale uses this module's helpers

    return scale_rows(files, dask_files, tmp, key, jobs)


def _single_frame_rows(single: corpus.Corpus, tmp: Path, key: Path, jobs: int,
                       repeat: int, baseline: tuple[str, Path] | None) -> list[Row]:
    files = single.stamp["files"]
    plan = _single_frame_plan(files, single.stamp["bytes"], str(single.tree), key, jobs,
                              baseline)
    print(f"measuring {len(plan)} commands on {files} files ...")
    rows = _run_rows(plan, tmp / "out", repeat)
    _ratios(rows)
    return rows


def _single_frame_plan(files: int, size: int, tree: str, key: Path, jobs: int,
                       baseline: tuple[str, Path] | None
                       ) -> list[tuple[Row, Callable[[Path, Path], str]]]:
    """The single-frame table's commands in the order the first round runs them: the
    1-job rows, then the N-job rows bracketed by pydicom's copy at N processes (just before
    and again just after them: the goals' reference, :func:`bench.goals.bracketed`); the
    rows inside the bracket take turns in the next rounds (:func:`round_order`)."""
    plan: list[tuple[Row, Callable[[Path, Path], str]]] = [
        (Row("cp -r", "cp", 1, files, size, ["cp", "-r", tree, "{out}"]), _check_copy(files))]
    if jobs > 1:
        plan.append((_noop_row(1, files, size, tree), _check_copy(files)))
        plan += [(_anonymizer_row(profile, 1, files, size, key, tree), _check_anonymizer(files))
                 for profile in ("basic", "research")]
    plan.append((_noop_row(jobs, files, size, tree), _check_copy(files)))
    plan += [(_anonymizer_row(profile, jobs, files, size, key, tree), _check_anonymizer(files))
             for profile in ("research", "basic")]
    plan.append((_noop_row(jobs, files, size, tree, sha256=True), _check_copy(files)))
    if baseline is not None:
        plan.append((_baseline_row(baseline, jobs, files, size, key, tree),
                     _check_anonymizer(files)))
    plan.append((_noop_row(jobs, files, size, tree, again=True), _check_copy(files)))
    return plan


def _run_arguments(profile: str, key: Path, jobs: int, tree: str | Path) -> list[str]:
    """``anonymizer run``'s arguments as the tables measure it (``{out}``: each run's)."""
    return ["run", "--profile", profile, "--key-file", str(key), "--jobs", str(jobs),
            "--no-progress", str(tree), "{out}"]


def _noop_row(jobs: int, files: int, size: int, tree: str | Path, again: bool = False,
              sha256: bool = False) -> Row:
    """pydicom's copy at ``jobs`` processes; ``again``: its second run in a round, after
    the rows it brackets (its ``x noop`` tells how far the machine drifted meanwhile);
    ``sha256``: the copy that also hashes every input and output (no goal's reference)."""
    name, kind = (f"pydicom+sha256 x{jobs}", goals.NOOP_SHA256) if sha256 else \
        (f"pydicom noop x{jobs}" + (" again" if again else ""),
         goals.NOOP_AGAIN if again else goals.NOOP)
    return Row(name, kind, jobs, files, size,
               [sys.executable, "-m", "bench.noop", "--jobs", str(jobs),
                *(["--sha256"] if sha256 else []), str(tree), "{out}"])


def _anonymizer_row(profile: str, jobs: int, files: int, size: int, key: Path,
                    tree: str | Path, exit_code: int = 0) -> Row:
    return Row(f"anonymizer {profile} -j{jobs}", "anonymizer", jobs, files, size,
               [_anonymizer(), *_run_arguments(profile, key, jobs, tree)], profile=profile,
               exit_code=exit_code)


def _baseline_row(baseline: tuple[str, Path], jobs: int, files: int, size: int, key: Path,
                  tree: str | Path, exit_code: int = 0) -> Row:
    """The baseline revision's research, beside ours."""
    return Row(f"baseline {baseline[0]} research -j{jobs}", "baseline", jobs, files, size,
               _baseline_command(baseline, *_run_arguments("research", key, jobs, tree)),
               profile="research", exit_code=exit_code)


def _few_per_patient_rows(few: corpus.Corpus, tmp: Path, key: Path, jobs: int,
                          repeat: int, baseline: tuple[str, Path] | None) -> list[Row]:
    """pydicom's copy and research (and the baseline's) on the corpus of few files per
    patient, in rounds."""
    files, size, tree = few.stamp["files"], few.stamp["bytes"], str(few.tree)
    plan: list[tuple[Row, Callable[[Path, Path], str]]] = [
        (_noop_row(jobs, files, size, tree), _check_copy(files)),
        (_anonymizer_row("research", jobs, files, size, key, tree), _check_anonymizer(files))]
    if baseline is not None:
        plan.append((_baseline_row(baseline, jobs, files, size, key, tree),
                     _check_anonymizer(files)))
    plan.append((_noop_row(jobs, files, size, tree, again=True), _check_copy(files)))
    print(f"measuring {len(plan)} commands on {files} files of few per patient ...")
    rows = _run_rows(plan, tmp / "out-few", repeat)
    _ratios(rows)
    return rows


def _few_per_patient_summary(few_rows: list[Row], rows: list[Row], jobs: int) -> str:
    """research's paired ratio to pydicom here, and its de-identify CPU beside the main
    corpus's (where a patient's identifiers serve 100 files)."""
    research = next(row for row in few_rows if row.kind == "anonymizer")
    compared = goals.passed(few_rows)  # as the goals compare them
    paired = goals.paired_median(goals.reference(compared, jobs),
                                 research if any(r is research for r in compared) else None)
    line = (f"  research -j{jobs} throughput / pydicom x{jobs}, per round: median "
            f"{paired[1]}" if paired is not None else "")
    main = next((r for r in rows if r.name == research.name), None)
    if research.timings and main is not None and main.timings:
        here, there = research.timings["deidentify"], main.timings["deidentify"]
        line += (f"\n  de-identify {here:.3f} CPU ms per file here, {there:.3f} on the main "
                 f"corpus ({here / there:.2f}x)")
    for before in (row for row in few_rows if row.kind == "baseline"):
        line += (f"\n  research -j{jobs}: {research.seconds / before.seconds:.3f}x the time of "
                 f"{before.name.removesuffix(f' research -j{jobs}')}")
    return line


def _compile_bytecode(*folders: Path) -> None:
    """Write the measured code's bytecode first, as an installed package has it: with
    PYTHONDONTWRITEBYTECODE set (as in some CI images) every process start would compile the
    package's modules again (~0.1 s of CPU each, in the main process and every worker)."""
    for folder in folders:
        compileall.compile_dir(str(folder), quiet=1)


def _baseline(ref: str) -> tuple[str, Path]:
    """The sources of git revision ``ref`` (short hash, folder), exported once under
    ``bench/corpus/`` to be run with this venv's Python and dependencies."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.strip()
    short = sha[:10]
    folder = corpus.CORPUS_ROOT / f"baseline-{short}"
    if not (folder / "anonymizer" / "__init__.py").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha, "anonymizer", "profiles"], cwd=REPO,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        # where pyproject's package-dir puts them (else the editable install's finder
        # serves this checkout's built-in profiles to the baseline)
        (folder / "profiles").rename(folder / "anonymizer" / "builtin_profiles")
    return short, folder


def _baseline_command(baseline: tuple[str, Path], *arguments: str) -> list[str]:
    """``anonymizer ARGUMENTS`` as the baseline revision runs it (started in its folder:
    ``python -m`` puts the working directory, here the repository, first on the path)."""
    return ["env", "-C", str(baseline[1]), f"PYTHONPATH={baseline[1]}", sys.executable, "-m",
            "anonymizer", *arguments]


def _linked_tree(target: Path, *trees: Path) -> int:
    """Hard-link every file of ``trees`` into ``target`` (one folder each); file count."""
    count = 0
    for index, tree in enumerate(trees):
        for folder, _, names in os.walk(tree):
            destination = target / f"part{index}" / Path(folder).relative_to(tree)
            destination.mkdir(parents=True, exist_ok=True)
            for name in names:
                os.link(Path(folder, name), destination / name)
                count += 1
    return count


def _mixed_rows(single: corpus.Corpus, us: corpus.Corpus, tmp: Path, key: Path, jobs: int,
                repeat: int, baseline: tuple[str, Path] | None) -> list[Row]:
    """The CT/MR corpus plus the ultrasound images (half with text drawn in), in one tree:
    research fails the images with text, research-ocr-blank blanks them."""
    tree = tmp / "mixed"
    files = _linked_tree(tree, single.tree, us.tree)
    size = single.stamp["bytes"] + us.stamp["bytes"]
    with_text = us.stamp["with_text"]
    plan = [(_anonymizer_row(profile, jobs, files, size, key, tree,
                             exit_code=0 if written == files else 1),
             _check_counts(written, files - written))
            for profile, written in (("research", files - with_text),
                                     ("research-ocr-blank", files))]
    if baseline is not None:
        # a baseline from before the pixel stage writes every image, text and all; one
        # with it fails the images with text, as research does here
        written = files - with_text if (baseline[1] / "anonymizer" / "pixels").is_dir() \
            else files
        plan.append((_baseline_row(baseline, jobs, files, size, key, tree,
                                   exit_code=0 if written == files else 1),
                      _check_counts(written, files - written)))
    print(f"measuring {len(plan)} commands on {files} files (CT/MR + {us.stamp['files']} "
          "ultrasound) ...")
    return _run_rows(plan, tmp / "out-mixed", repeat)


def _listen_rows(single: corpus.Corpus, tmp: Path, key: Path, jobs: int, files: int,
                 repeat: int) -> list[Row]:
    """The first ``files`` single-frame files through ``anonymizer listen`` (bench.listen:
    pynetdicom senders, the gateway, a folder); its own line (steady instances/s, the
    gateway's peak RSS) is the check."""
    tree = tmp / "listen-in"
    chosen = sorted(p for p in single.tree.rglob("*") if p.is_file())[:files]
    for path in chosen:
        target = tree / path.relative_to(single.tree)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)
    size = sum(path.stat().st_size for path in chosen)

    row = Row(f"anonymizer listen -j{jobs}", "listen", jobs, len(chosen), size,
              [sys.executable, "-m", "bench.listen", "--key-file", str(key), "--jobs", str(jobs),
               str(tree), "{out}"], profile="basic")
    print(f"measuring anonymizer listen on {len(chosen)} files ...")
    return _run_rows([(row, _check_listen)], tmp / "out-listen", repeat)


def _check_listen(out: Path, log: Path) -> str:
    """bench.listen's own line says every instance was forwarded (and its steady rate)."""
    line = _tail(log, 1)
    if line.startswith("listen: ") and line.endswith("; ok"):
        return "ok, " + line[len("listen: "):-len("; ok")]
    return f"FAILED: {line}"


def _orthanc_server():
    """The tests' loopback Orthanc (``tests/orthanc_server.py``), or why it cannot run."""
    try:
        sys.path.insert(0, str(REPO / "tests"))
        import orthanc_server
    except ImportError as exc:  # requests missing: the net extra is not installed
        return f"cannot import tests/orthanc_server.py ({exc})"
    finally:
        sys.path.remove(str(REPO / "tests"))
    return orthanc_server.orthanc_missing() or orthanc_server


def _network_rows(files: int, tmp: Path, key: Path, jobs: int, repeat: int) -> list[Row]:
    """``files`` single-frame files (their own cached corpus) loaded into a PACS (Orthanc on
    loopback), then ``anonymizer run`` folder -> folder (the reference), PACS -> folder by
    WADO-RS and by C-GET, folder -> archive (a second Orthanc) by STOW-RS and by C-STORE,
    and ``anonymizer listen`` -> archive both ways. A run's check: its audit log counts
    every instance written (into a folder: as many files on disk); the archive holds every
    instance (its REST API), and is wiped after each run. None when Orthanc is missing."""
    server = _orthanc_server()
    if isinstance(server, str):
        print(f"network: skipped: {server}")
        return []
    single = corpus.single_frame(files)
    tree, size = single.tree, single.stamp["bytes"]
    instances = sorted(p for p in tree.rglob("*") if p.is_file())
    netrc = tmp / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {server.USER} password {server.PASSWORD}\n")
    netrc.chmod(0o600)
    saved_netrc = os.environ.get("NETRC")
    os.environ["NETRC"] = str(netrc)  # the measured commands inherit it
    pacs = server.Orthanc(tmp / "orthanc-pacs", "PACS",
                          modalities={"ANONYMIZER": server.free_port()})
    archive = server.Orthanc(tmp / "orthanc-archive", "ARCHIVE")
    try:
        started = time.perf_counter()
        pacs.start()
        archive.start()
        pacs.upload(instances)
        stored = len(pacs.instances())
        if stored != len(instances):
            raise RuntimeError(f"the PACS holds {stored} of {len(instances)} instances")
        studies = tmp / "studies.txt"
        studies.write_text("".join(pacs.get(f"/studies/{study}").json()["MainDicomTags"]
                                   ["StudyInstanceUID"] + "\n"
                                   for study in pacs.get("/studies").json()))
        print(f"network: {stored} instances loaded into the PACS in "
              f"{time.perf_counter() - started:.1f} s")

        def archived(out: Path) -> str:
            """The archive holds every instance (then it is wiped for the next run)."""
            found = len(archive.instances())
            archive.wipe()
            return "ok" if found == stored else f"FAILED: the archive holds {found} of {stored}"

        def sent(out: Path, log: Path) -> str:  # anonymizer run: its audit log too
            in_archive, counts = archived(out), _run_end_counts(out)
            if isinstance(counts, str) or counts.get("written") != stored:
                return f"FAILED: {counts}; {_tail(log)}"
            return in_archive

        def forwarded(out: Path, log: Path) -> str:  # bench.listen: its own line too
            in_archive = archived(out)
            return _check_listen(out, log) if in_archive == "ok" else in_archive

        run = [_anonymizer(), "run", "--profile", "basic", "--key-file", str(key), "--jobs",
               str(jobs), "--no-progress"]
        pull = ["--studies", str(studies)]
        audit = ["--audit", "{out}/audit.jsonl"]
        listen = [sys.executable, "-m", "bench.listen", "--key-file", str(key), "--jobs",
                  str(jobs), str(tree)]
        plan: list[tuple[str, list[str], Callable[[Path, Path], str]]] = [
            ("run folder -> folder", [*run, str(tree), "{out}"], _check_anonymizer(stored)),
            ("run WADO-RS -> folder", [*run, *pull, pacs.dicomweb, "{out}"],
             _check_anonymizer(stored)),
            ("run C-GET -> folder", [*run, *pull, pacs.dimse, "{out}"],
             _check_anonymizer(stored)),
            ("run folder -> STOW-RS", [*run, *audit, str(tree), archive.dicomweb], sent),
            ("run folder -> C-STORE", [*run, *audit, str(tree), archive.dimse], sent),
            ("listen -> STOW-RS", [*listen, archive.dicomweb], forwarded),
            ("listen -> C-STORE", [*listen, archive.dimse], forwarded),
        ]
        archive.wipe()
        print(f"measuring {len(plan)} network commands on {stored} instances ...")
        # one command at a time: each check reads what the archive received
        return [row for name, command, check in plan for row in _run_rows(
            [(Row(name, "network", jobs, stored, size, command, profile="basic"), check)],
            tmp / "out-network", repeat)]
    finally:
        server.remove(pacs, archive)
        if saved_netrc is None:
            os.environ.pop("NETRC", None)
        else:
            os.environ["NETRC"] = saved_netrc


def _check_counts(written: int, failed: int) -> Callable[[Path, Path], str]:
    """The run wrote ``written`` inputs and failed ``failed`` (the images with text)."""
    def check(out: Path, log: Path) -> str:
        counts = _run_end_counts(out)
        if isinstance(counts, str):
            return counts
        if counts.get("written", 0) != written or counts.get("failed", 0) != failed:
            return f"FAILED: {counts}, expected {written} written, {failed} failed; {_tail(log)}"
        return "ok"
    return check


def _region_profile(tmp: Path) -> Path:
    """research plus a region rule blanking the top 32 rows of every CT frame."""
    path = tmp / "research-region.yaml"
    path.write_text("name: research-region\nversion: '1'\nextends: research\n"
                    "pixels:\n  ocr: 'off'\n  regions:\n    - name: top bar\n"
                    "      match: {Modality: CT}\n      blank: [[0, 0, 512, 32]]\n")
    return path


def _huge_rows(huge: corpus.Corpus, tmp: Path, key: Path, repeat: int) -> list[Row]:
    size, tree, out = huge.stamp["bytes"], str(huge.tree), tmp / "out-huge"
    source = huge.tree / huge.stamp["file"]
    offset, length = corpus.pixel_data_region(source)
    started = time.perf_counter()
    digest = corpus.sha256_region(source, offset, length)  # also warms the page cache
    if digest != huge.stamp["pixel_sha256"] or length != huge.stamp["pixel_length"]:
        raise RuntimeError(f"{source}: Pixel Data differs from the corpus stamp; delete "
                           f"{huge.path} to rebuild it")
    print(f"multi-frame input: Pixel Data {length / MiB:.0f} MiB at offset {offset}, "
          f"sha256 {digest[:16]}... (streamed in {time.perf_counter() - started:.1f} s)")

    def pixels_ok(out: Path, log: Path) -> str:
        found = _check_copy(1)(out, log)
        return _check_pixels(out, (digest, length)) if found == "ok" else found

    plan = [
        (Row("cp -r", "cp", 1, 1, size, ["cp", "-r", tree, "{out}"]), pixels_ok),
        (_noop_row(1, 1, size, tree), pixels_ok),
        (_anonymizer_row("research", 1, 1, size, key, tree),
         _check_anonymizer(1, (digest, length))),
        # a region rule on every frame: decoded, painted and re-encoded one frame at a
        # time, the new Pixel Data built in a scratch file (memory stays one frame)
        (Row("anonymizer region rule -j1", "anonymizer", 1, 1, size,
             [_anonymizer(), *_run_arguments(str(_region_profile(tmp)), key, 1, tree)],
             profile="research + region rule"),
         _check_anonymizer(1)),
    ]
    print(f"measuring {len(plan)} commands on the multi-frame file ...")
    rows = _run_rows(plan, out, repeat)
    _ratios(rows)
    return rows


if __name__ == "__main__":
    sys.exit(main())
