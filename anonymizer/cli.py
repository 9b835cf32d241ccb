"""Command line: ``anonymizer run | profiles | keygen | report``.

Exit codes: 0 every file written (or skipped as not DICOM), 1 some files failed,
2 usage, profile or key error (one line on stderr, no traceback), or a network peer that
refuses us or cannot be reached, 3 the run stopped because OUT cannot be written (disk
full, read-only, permission) or a network source stopped answering, 130 interrupted by
SIGINT, 141 the reader of the output closed it early (``| head``), 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from anonymizer import __version__
from anonymizer.errors import AnonymizerError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: What a shell reports for a command killed by SIGPIPE (128 + 13), as ``yes | head`` does.
EXIT_BROKEN_PIPE = 141


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(EXIT_USAGE, f"anonymizer: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="anonymizer", description="DICOM de-identification batch pipeline")
    parser.add_argument("--version", action="version", version=f"anonymizer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="de-identify every DICOM file under IN into OUT")
    run.add_argument("input", metavar="IN", help="a folder, dicomweb+http(s)://HOST:PORT/PATH "
                     "or dimse[+tls]://AET@HOST:PORT")
    run.add_argument("output", metavar="OUT", help="a folder, or a URL as IN")
    run.add_argument("--profile", "-p", default="default",
                     help="built-in profile name or YAML path (default: default)")
    run.add_argument("--key-file", help="secret key file (else $ANONYMIZER_KEY)")
    run.add_argument("--jobs", "-j", type=int, default=0, help="worker processes (0: all cores)")
    run.add_argument("--batch-size", type=int, default=32, help="files per joblib task")
    run.add_argument("--layout", help="output path template, or 'mirror' to keep input paths")
    run.add_argument("--audit", type=Path, help="audit log path (default: OUT/audit.jsonl)")
    run.add_argument("--manifest", type=Path,
                     help="write input->output paths here (PHI: must be outside OUT)")
    run.add_argument("--crosswalk", type=Path,
                     help="write original->pseudonym table here (PHI: must be outside OUT)")
    run.add_argument("--quarantine", type=Path, metavar="DIR",
                     help="list failed inputs in DIR/failed-inputs.csv (PHI: outside OUT)")
    run.add_argument("--force", action="store_true",
                     help="reprocess everything even if OUT holds a run with another "
                     "profile, key or layout")
    run.add_argument("--timeout", type=float, default=600.0,
                     help="seconds allowed per file (0: no limit; default 600)")
    run.add_argument("--backend", choices=("local", "dask"), default="local",
                     help="local worker processes (default) or a Dask distributed cluster")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="Dask scheduler address for --backend dask (e.g. tcp://host:8786)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_network_options(run)

    profiles = commands.add_parser("profiles", help="list, check or show profiles")
    sub = profiles.add_subparsers(dest="profiles_command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="built-in profiles")
    check = sub.add_parser("check", help="validate profile files")
    check.add_argument("files", nargs="+")
    show = sub.add_parser("show", help="print the compiled rules of a profile")
    show.add_argument("name")
    show.add_argument("--sop-class", help="resolve Type-dependent actions for this SOP Class "
                      "(UID, or a name such as CT, MR, 'Enhanced CT Image Storage')")

    keygen = commands.add_parser("keygen", help="create a new random secret key file")
    keygen.add_argument("path", type=Path)

    report = commands.add_parser("report", help="totals and failures of an audit log")
    report.add_argument("audit", type=Path)
    return parser


def _add_network_options(run: argparse.ArgumentParser) -> None:
    from anonymizer.net.options import DEFAULT_AE_TITLE

    net = run.add_argument_group("network source and destination (IN or OUT a URL)")
    net.add_argument("--query", action="append", default=[], metavar="KEY=VALUE",
                     help="what to pull from a network source: QIDO/C-FIND matching, "
                     "repeatable (e.g. StudyDate=20240101-20240131, ModalitiesInStudy=CT)")
    net.add_argument("--studies", type=Path, metavar="FILE",
                     help="pull these studies: Study Instance UIDs, one a line")
    net.add_argument("--ae-title", default=DEFAULT_AE_TITLE,
                     help=f"our calling AE title for DIMSE (default {DEFAULT_AE_TITLE})")
    net.add_argument("--move-port", type=int, metavar="P",
                     help="fetch by C-MOVE to our storage SCP on port P (default: C-GET)")
    net.add_argument("--token-file", type=Path, metavar="FILE",
                     help="DICOMweb bearer token (else HTTP basic credentials from netrc)")
    net.add_argument("--ca-file", type=Path, metavar="FILE",
                     help="CA certificates to verify a dicomweb+https or dimse+tls peer")


def _network(args: argparse.Namespace) -> dict[str, object]:
    """The RunConfig fields of IN and OUT: folders, or network URLs with their options."""
    from anonymizer.io.writer import TEMP_PREFIX
    from anonymizer.net import is_network_url
    from anonymizer.net.options import NetOptions
    from anonymizer.net.urls import check_ae_title

    source = args.input if is_network_url(args.input) else None
    destination = args.output if is_network_url(args.output) else None
    output = Path(args.output)
    if destination is not None:
        if args.audit is None:
            raise _usage("a network OUT needs --audit FILE: the audit log is the record that "
                         "makes a rerun send nothing twice")
        # the outputs pass through here on their way out; removed at the end of the run
        output = args.audit.parent / f"{TEMP_PREFIX}work-{args.audit.name}"
    if args.move_port is not None and not 0 < args.move_port < 65536:
        raise _usage("--move-port must be a port number (1-65535)")
    options = NetOptions(tuple(args.query), args.studies, check_ae_title(args.ae_title),
                         args.move_port, args.token_file, args.ca_file)
    return {"input_dir": Path(args.input) if source is None else Path(),
            "output_dir": output, "source_url": source, "destination_url": destination,
            "net": options}


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (see the module docstring)."""
    try:
        try:
            return _main(argv)
        finally:
            # Flushed here so that a reader that closed the pipe early shows up as an
            # exception this function handles, not as a message at interpreter exit.
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader (``| head``) has what it wanted: stop quietly. Python would try to
        # flush the dead pipe again at exit and complain, so both streams go to devnull.
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            os.dup2(devnull, stream.fileno())
        return EXIT_BROKEN_PIPE


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "profiles":
            return _profiles(args)
        if args.command == "keygen":
            return _keygen(args)
        return _report(args)
    except AnonymizerError as exc:
        print(f"anonymizer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("anonymizer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    from anonymizer.pipeline import RunConfig, run
    from anonymizer.pipeline.layout import check_layout

    if args.jobs < 0 or args.batch_size < 1:
        raise _usage("--jobs must be >= 0 and --batch-size >= 1")
    if args.layout is not None:
        try:
            check_layout(args.layout)
        except ValueError as exc:
            raise _usage(f"--layout: {exc}") from None
    summary = run(RunConfig(
        **_network(args), profile=args.profile,
        key_file=args.key_file, jobs=args.jobs, batch_size=args.batch_size, layout=args.layout,
        audit_path=args.audit, manifest_path=args.manifest, crosswalk_path=args.crosswalk,
        quarantine_dir=args.quarantine, force=args.force, timeout=args.timeout,
        backend=args.backend, scheduler=args.scheduler,
        progress=not args.no_progress and sys.stderr.isatty()))
    counts = summary.counts
    done = f", {counts['unchanged']} already done" if counts["unchanged"] else ""
    print(f"anonymizer: {counts['written']} written, {counts['failed']} failed, "
          f"{counts['skipped']} skipped{done} in {summary.elapsed:.1f}s; audit log: "
          f"{summary.audit_path}", file=sys.stderr)
    if summary.stopped:
        print(f"anonymizer: {summary.stopped}; {summary.left} input(s) not reached (plus any "
              "in flight): run the same command again to continue", file=sys.stderr)
    for reason, number in summary.failures.most_common():
        print(f"  failed x{number}: {reason}", file=sys.stderr)
    return summary.exit_code


def _usage(message: str) -> AnonymizerError:
    from anonymizer.errors import UsageError

    return UsageError(message)


def _profiles(args: argparse.Namespace) -> int:
    from anonymizer.profiles import builtin_profile_names, load_profile

    if args.profiles_command == "list":
        for name in builtin_profile_names():
            profile = load_profile(name)
            print(f"{name:12} {profile.description}")
        return EXIT_OK
    if args.profiles_command == "check":
        for path in args.files:
            profile = load_profile(path)
            print(f"{path}: ok (profile {profile.name}, {len(profile.tag_rules)} tag rules, "
                  f"{len(profile.pattern_rules)} patterns)")
        return EXIT_OK
    from anonymizer.show import show_profile

    print("\n".join(show_profile(load_profile(args.name), args.sop_class)))
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    from anonymizer.keyed import generate_key_file

    try:
        generate_key_file(args.path)
    except FileExistsError:
        raise _usage(f"{args.path}: exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise _usage(f"{args.path}: {exc.strerror}") from None
    print(f"anonymizer: new key written to {args.path} (keep it secret, keep it safe: the same "
          "key gives the same pseudonyms and UIDs)", file=sys.stderr)
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from anonymizer.pipeline.audit import read_records

    try:
        records = read_records(args.audit)
    except OSError as exc:
        raise _usage(f"{args.audit}: {exc.strerror}") from None
    latest: dict[str, dict] = {}
    for record in records:
        if record.get("type") == "file":
            latest[record["input"]] = record
    totals = Counter(r["status"] for r in latest.values())
    reasons = Counter(r.get("reason") for r in latest.values() if r["status"] != "written")
    runs = sum(1 for r in records if r.get("type") == "run_start")
    print(f"{len(latest)} inputs in {runs} run(s): " + ", ".join(
        f"{totals[s]} {s}" for s in ("written", "failed", "skipped")))
    for reason, number in reasons.most_common():
        print(f"  {number:6}  {reason}")
    return EXIT_FAILED if totals["failed"] else EXIT_OK
