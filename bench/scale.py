"""Scale: discovery and commit of many tiny files, the resume of a finished run, and the
Dask backend beside the local one.

    python -m bench.scale [--files N] [--dask N] [--jobs N]

Builds a tree of N tiny DICOM files (a few synthetic CT instances of 8x8 pixels, each
hard-linked up to 20,000 times, 1,000 per folder), then measures ``anonymizer run -p research
--layout mirror`` on it: the first run and the reruns with nothing left to do (resume: the
quick check by stat, then ``--rehash``, which reads and hashes every input), each with the
parent process's own peak RSS (:mod:`bench.parent`: the workers are not the parent) and the
time to the first output; the same at N/4 files, so that a parent RSS that
grows with the number of files shows. Then, on the first ``--dask`` files, the local backend
and the Dask backend on a ``LocalCluster`` of ``--jobs`` single-threaded worker processes:
the difference is the Dask overhead per file. ``bench.run --scale N`` runs this too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from bench import corpus

#: hard links per base file in the tree: the N/4 and Dask subsets link the same files
#: again, and ext4 allows 65,000 links per inode
LINKS_PER_FILE = 20000
FILES_PER_FOLDER = 1000


def tiny_dicom(path: Path, index: int) -> None:
    """A synthetic CT instance of 8x8 pixels (under 1 KB): what the run does per file
    without the cost of large values."""
    uid = f"{corpus.UID_ROOT}9.{index}"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = corpus.CT_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = f"{uid}.3"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = corpus.IMPLEMENTATION_CLASS_UID
    ds.SOPClassUID, ds.SOPInstanceUID = corpus.CT_IMAGE_STORAGE, f"{uid}.3"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{uid}.1", f"{uid}.2"
    ds.PatientName, ds.PatientID = f"TINY^PATIENT{index}", f"TINY{index:06d}"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20200101", "120000", f"ACC{index:06d}"
    ds.Modality, ds.InstitutionName, ds.ReferringPhysicianName = "CT", "SYNTHETIC", "DOC^TOR"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(range(128))
    ds.save_as(path, enforce_file_format=True)


def tiny_tree(root: Path, count: int) -> Path:
    """``root/tree`` with ``count`` hard links of a few tiny files; returns the tree."""
    bases = root / "bases"
    tree = root / "tree"
    bases.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        base_index = number // LINKS_PER_FILE
        base = bases / f"base{base_index}.dcm"
        if number % LINKS_PER_FILE == 0:
            tiny_dicom(base, base_index)
        folder = tree / f"d{number // FILES_PER_FOLDER:04d}"
        if number % FILES_PER_FOLDER == 0:
            folder.mkdir(parents=True)
        os.link(base, folder / f"f{number % FILES_PER_FOLDER:04d}.dcm")
    return tree


def _subset(tree: Path, target: Path, count: int) -> Path:
    """The first ``count`` files of ``tree`` (in its folder order), hard-linked."""
    done = 0
    for folder in sorted(tree.iterdir()):
        for name in sorted(os.listdir(folder)):
            if done == count:
                return target
            (target / folder.name).mkdir(parents=True, exist_ok=True)
            os.link(folder / name, target / folder.name / name)
            done += 1
    return target


def _measured(row, out: Path, watch: bool, expected: dict[str, int]):
    """Run ``row.command`` once (in :mod:`bench.parent`), fill the row; OUT is kept."""
    from bench.run import _busy_cpu_seconds, _measure, _run_end_counts, _tail

    report_file = out.with_name(out.name + ".parent.json")
    log = out.with_name(out.name + ".log")
    command = [sys.executable, "-m", "bench.parent", "--report", str(report_file),
               *(["--watch", str(out)] if watch else []), "--",
               *[part.replace("{out}", str(out)) for part in row.command]]
    busy = _busy_cpu_seconds()
    report = _measure(command, log)
    busy = _busy_cpu_seconds() - busy
    parent = json.loads(report_file.read_text()) if report_file.is_file() else {}
    counts = _run_end_counts(out)
    row.seconds = report["seconds"]
    row.files_per_s = round(row.files / row.seconds, 2)
    row.peak_rss_mib = round(max(report["max_rss_kib"], report["sampled_hwm_kib"]) / 1024, 1)
    row.tree_rss_mib = round(report["sampled_tree_rss_kib"] / 1024, 1)
    row.cpu_s = round(report["user_s"] + report["sys_s"], 3)
    row.background_cpu_s = round(max(0.0, busy - row.cpu_s), 2)
    row.parent_rss_mib = round(parent.get("parent_peak_rss_kib", 0) / 1024, 1)
    row.first_output_s = parent.get("first_output_s")
    row.audit_bytes_per_file = round((out / "audit.jsonl").stat().st_size / row.files, 1) \
        if (out / "audit.jsonl").is_file() else None
    if report["exit_code"] != 0:
        row.check = f"FAILED: exit {report['exit_code']}; {_tail(log)}"
    elif counts != expected:
        row.check = f"FAILED: counts {counts}, expected {expected}"
    else:
        row.check = "ok"
    row.check += f"; parent {row.parent_rss_mib:.0f} MiB"
    if row.first_output_s is not None:
        row.check += f"; first output {row.first_output_s:.2f} s"
    if row.audit_bytes_per_file is not None:
        row.check += f"; log {row.audit_bytes_per_file:.0f} B/file"
    print(f"  {row.name:<32} {row.seconds:8.2f} s  parent {row.parent_rss_mib:6.1f} MiB  "
          f"{row.check}", flush=True)
    return row


def scale_rows(count: int, dask_count: int, tmp: Path, key: Path, jobs: int) -> list:
    """The scale rows (see the module docstring); ``tmp`` is a scratch folder."""
    from bench.run import Row

    rows = []
    source = tmp / "scale"
    tree = tiny_tree(source, count)
    file_size = (source / "bases" / "base0.dcm").stat().st_size
    print(f"scale: {count} tiny files (hard links of {len(os.listdir(source / 'bases'))} "
          f"synthetic CT instances) ...", flush=True)

    def run_command(input_tree: Path, *extra: str) -> list[str]:
        return ["run", "--profile", "research", "--key-file", str(key), "--layout", "mirror",
                "--jobs", str(jobs), "--no-progress", *extra, str(input_tree), "{out}"]

    quarter = _subset(tree, tmp / "scale-quarter", max(1, count // 4)) if count >= 4 else None
    for input_tree, files in ((quarter, count // 4), (tree, count)):
        if input_tree is None:
            continue
        out = tmp / f"out-scale-{files}"
        shutil.rmtree(out, ignore_errors=True)
        first = Row(f"scale {files} first -j{jobs}", "scale", jobs, files, files * file_size,
                    run_command(input_tree), profile="research")
        rows.append(_measured(first, out, True, {"written": files}))
        again = Row(f"scale {files} rerun -j{jobs}", "scale-resume", jobs, files,
                    files * file_size,
                    run_command(input_tree), profile="research")
        rows.append(_measured(again, out, False, {"unchanged": files}))
        rehash = Row(f"scale {files} rerun --rehash -j{jobs}", "scale-resume", jobs, files,
                     files * file_size,
                     run_command(input_tree, "--rehash"), profile="research")
        rows.append(_measured(rehash, out, False, {"unchanged": files}))
        shutil.rmtree(out, ignore_errors=True)
    if dask_count:
        rows.extend(_dask_rows(tree, min(dask_count, count), tmp, jobs, run_command,
                               file_size))
    return rows


def _dask_rows(tree: Path, files: int, tmp: Path, jobs: int, run_command,
               file_size: int) -> list:
    """The local backend and Dask on a LocalCluster on the same files."""
    from bench.run import Row

    try:
        import distributed
    except ImportError:
        print("  dask: not installed (pip install 'anonymizer[dask]'); skipped", flush=True)
        return []
    subset = _subset(tree, tmp / "scale-dask-in", files)
    rows = []
    local = Row(f"scale {files} local -j{jobs}", "scale", jobs, files, files * file_size,
                run_command(subset), profile="research")
    rows.append(_measured(local, tmp / "out-scale-local", True, {"written": files}))
    shutil.rmtree(tmp / "out-scale-local", ignore_errors=True)
    with distributed.LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        remote = Row(f"scale {files} dask x{jobs}", "scale-dask", jobs, files,
                     files * file_size,
                     run_command(subset, "--backend", "dask", "--scheduler",
                                 cluster.scheduler_address), profile="research")
        rows.append(_measured(remote, tmp / "out-scale-dask", True, {"written": files}))
    shutil.rmtree(tmp / "out-scale-dask", ignore_errors=True)
    # wall time per file more than local, times the processes: CPU-equivalent overhead
    extra_ms = (remote.seconds - local.seconds) * jobs / files * 1000
    remote.dask_overhead_ms_per_file = round(extra_ms, 3)
    remote.check += f"; Dask overhead {extra_ms:.2f} ms per file (x{jobs} processes)"
    print(f"  dask overhead: {extra_ms:.2f} ms of a process per file", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    from bench.run import _anonymizer, _table

    parser = argparse.ArgumentParser(prog="python -m bench.scale",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=200000)
    parser.add_argument("--dask", type=int, default=20000, metavar="N",
                        help="files for the local-vs-Dask rows (0: skip)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tmp", type=Path, default=corpus.CORPUS_ROOT,
                        help="where the scratch folder goes (default bench/corpus)")
    args = parser.parse_args(argv)
    args.tmp.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bench-scale-", dir=args.tmp))
    try:
        key = tmp / "key"
        import subprocess

        subprocess.run([_anonymizer(), "keygen", str(key)], check=True, capture_output=True)
        rows = scale_rows(args.files, args.dask, tmp, key, max(1, args.jobs))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(_table(rows))
    print(json.dumps([{k: v for k, v in vars(r).items() if k != "repeats"} for r in rows]))
    return 0 if all(r.check.startswith("ok") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
