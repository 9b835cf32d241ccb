"""Command line: ``anonymizer run | verify | review | listen | profiles | keygen | report``.

Exit codes: 0 every file written (or skipped as not DICOM), 1 some files failed (for
``verify``: an identifier of an input found in its output, or a pair not checked; for
``review``: residual identifiers found with ``--input``), 2 usage, profile or key error
(one line on stderr, no traceback), or a network peer that refuses us or cannot be
reached, 3 the run stopped because OUT cannot be written (disk full, read-only,
permission) or a network source stopped answering, 4 another run holds OUT (one run per
output folder; ``--wait-lock`` waits for it), 130 interrupted by SIGINT, 141 the reader of
the output closed it early (``| head``), 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from anonymizer import __version__
from anonymizer.errors import AnonymizerError, OutputInUseError

if TYPE_CHECKING:
    from anonymizer.pipeline import RunConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: What a shell reports for a command killed by SIGPIPE (128 + 13), as ``yes | head`` does.
EXIT_BROKEN_PIPE = 141
#: another run holds OUT (one run per output folder)
EXIT_OUTPUT_IN_USE = 4


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
    _add_deidentify_options(run, "OUT", batch_size=32)
    run.add_argument("--manifest", type=Path,
                     help="write input->output paths here (PHI: must be outside OUT)")
    run.add_argument("--backend", choices=("local", "dask"), default="local",
                     help="local worker processes (default) or a Dask distributed cluster")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="Dask scheduler address for --backend dask (e.g. tcp://host:8786)")
    run.add_argument("--rehash", action="store_true",
                     help="read and hash every input an earlier run wrote to prove it "
                     "unchanged (default: trust an unchanged size, time and inode)")
    shown = run.add_mutually_exclusive_group()
    shown.add_argument("--no-progress", action="store_true", help="no progress bar")
    shown.add_argument("--progress", action="store_true",
                       help="a progress bar also when stderr is not a terminal (a log file)")
    _add_network_options(run)

    verify = commands.add_parser(
        "verify", help="look for each input's identifiers in its output (exit 1 if found)")
    verify.add_argument("input", type=Path, metavar="IN")
    verify.add_argument("output", type=Path, metavar="OUT")
    verify.add_argument("--key-file", help="the run's secret key, to pair outputs with their "
                        "inputs through the audit log (else $ANONYMIZER_KEY)")
    verify.add_argument("--audit", type=Path, help="audit log (default: OUT/audit.jsonl)")
    verify.add_argument("--manifest", type=Path,
                        help="pair through this CSV (input,output columns) instead of the "
                        "audit log: for the output of any tool")
    verify.add_argument("--profile", "-p",
                        help="profile the outputs were made with (default: the one the "
                        "audit log records; with --manifest: none, pixels are not read)")
    verify.add_argument("--show-values", action="store_true",
                        help="print the identifiers found (the output is then PHI)")
    verify.add_argument("--report", type=Path, metavar="FILE",
                        help="write findings as JSON Lines to FILE instead of stdout")
    verify.add_argument("--strict", action="store_true",
                        help="also count identifiers in elements the profile keeps on purpose")
    verify.add_argument("--jobs", "-j", type=int, default=0,
                        help="worker processes (0: all cores)")
    verify.add_argument("--batch-size", type=int, default=8, help="pairs per joblib task")
    verify.add_argument("--timeout", type=float, default=600.0,
                        help="seconds allowed per pair (0: no limit; default 600)")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    listen = commands.add_parser(
        "listen", help="a de-identifying DICOM gateway: C-STORE SCP -> spool -> DEST")
    listen.add_argument("destination", metavar="DEST",
                        help="a folder, dicomweb+http(s)://HOST:PORT/PATH or "
                        "dimse[+tls]://AET@HOST:PORT (the same forms as run's OUT)")
    _add_deidentify_options(listen, "DEST", batch_size=8, audit_default=(
        "DEST/audit.jsonl; SPOOL/audit.jsonl for a network DEST"))
    listen.add_argument("--port", type=int, required=True,
                        help="TCP port to listen on (0: any free port, printed at start)")
    listen.add_argument("--ae-title", default="ANONYMIZER",
                        help="the gateway's own (called) AE title, which senders address")
    listen.add_argument("--allow-ae", action="append", default=[], metavar="AET",
                        help="accept associations only from this calling AE title "
                             "(repeatable; default: any)")
    listen.add_argument("--bind", default="0.0.0.0", metavar="ADDRESS",
                        help="address to listen on (default: every interface)")
    listen.add_argument("--spool", type=Path, metavar="DIR",
                        help="where received instances wait (PHI; default: DEST.spool "
                             "beside a folder DEST; needed for a network DEST)")
    listen.add_argument("--metrics", type=Path, metavar="FILE",
                        help="rewrite FILE every second with received/forwarded/failed/"
                             "queue counts (JSON)")
    listen.add_argument("--status-interval", type=float, default=60.0, metavar="SECONDS",
                        help="seconds between status lines on stderr (0: none; default 60)")
    listen.add_argument("--tls-cert", type=Path, metavar="FILE",
                        help="serve DICOM over TLS with this certificate (PEM)")
    listen.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key (PEM)")
    listen.add_argument("--tls-ca", type=Path, metavar="FILE",
                        help="require senders' certificates signed by this CA (PEM)")
    _add_listen_network_options(listen)

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

    review = commands.add_parser("review", help="write an HTML page of what a release kept, "
                                 "for a curator to review")
    review.add_argument("output", type=Path, metavar="OUT")
    review.add_argument("--html", type=Path, required=True, metavar="FILE",
                        help="the page to write (replaces only a page this command wrote)")
    review.add_argument("--input", type=Path, metavar="IN",
                        help="check OUT against its input (anonymizer verify) and show the "
                        "findings")
    review.add_argument("--key-file", help="secret key of the run, with --input (else "
                        "$ANONYMIZER_KEY)")
    review.add_argument("--audit", type=Path, help="audit log (default: OUT/audit.jsonl)")
    review.add_argument("--profile", "-p",
                        help="with --input: the profile the outputs were made with (default: "
                        "the built-in one the audit log records)")
    review.add_argument("--thumbnails", type=int, default=3, metavar="N",
                        help="thumbnails per series (default 3; 0: none)")
    review.add_argument("--top", type=int, default=20, metavar="N",
                        help="most frequent values listed per attribute (default 20)")
    return parser


def _add_deidentify_options(parser: argparse.ArgumentParser, out: str, batch_size: int,
                            audit_default: str | None = None) -> None:
    """The options ``run`` and ``listen`` share: how to de-identify and what to record."""
    parser.add_argument("--profile", "-p", default="default",
                        help="built-in profile name or YAML path (default: default)")
    parser.add_argument("--key-file", help="secret key file (else $ANONYMIZER_KEY)")
    parser.add_argument("--jobs", "-j", type=int, default=0,
                        help="worker processes (0: all cores)")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"files per worker task (default {batch_size})")
    parser.add_argument("--layout", help="output path template, or 'mirror' to keep input paths")
    parser.add_argument("--audit", type=Path, help="audit log path (default: "
                        f"{audit_default or out + '/audit.jsonl'})")
    parser.add_argument("--crosswalk", type=Path,
                        help=f"write original->pseudonym table here (PHI: must be outside {out})")
    parser.add_argument("--quarantine", type=Path, metavar="DIR",
                        help=f"list failed inputs in DIR/failed-inputs.csv (PHI: outside {out})")
    parser.add_argument("--force", action="store_true",
                        help=f"reprocess everything even if {out} holds a run with another "
                        "profile, key or layout")
    parser.add_argument("--wait-lock", type=float, default=0.0, metavar="SECONDS",
                        help=f"wait up to SECONDS for another run on the same {out} to finish "
                             "(default: stop at once, exit 4)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds allowed per file (0: no limit; default 600)")


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
    _add_credential_options(net)


def _add_credential_options(group: argparse._ArgumentGroup) -> None:
    """How we prove who we are to a network peer, and how we check it (run and listen)."""
    group.add_argument("--token-file", type=Path, metavar="FILE",
                       help="DICOMweb bearer token (else HTTP basic credentials from netrc)")
    group.add_argument("--ca-file", type=Path, metavar="FILE",
                       help="CA certificates to verify a dicomweb+https or dimse+tls peer")


def _add_listen_network_options(listen: argparse.ArgumentParser) -> None:
    from anonymizer.net.options import DEFAULT_AE_TITLE

    net = listen.add_argument_group("network destination (DEST a URL)")
    net.add_argument("--dest-ae-title", default=DEFAULT_AE_TITLE, metavar="AET",
                     help="our calling AE title when sending to a dimse:// DEST (default "
                     f"{DEFAULT_AE_TITLE}; --ae-title is the gateway's own, called one)")
    _add_credential_options(net)
    net.add_argument("--retry-max", type=float, default=60.0, metavar="SECONDS",
                     help="longest pause between attempts to send to a DEST that stopped "
                     "answering (default 60); what it did not take stays spooled")


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


def console() -> NoReturn:
    """The ``anonymizer`` command (and ``python -m anonymizer``): :func:`main`, then exit.

    Everything still alive is frozen out of the garbage collector first: the process is
    ending, and the collections of interpreter shutdown would walk every object pydicom,
    numpy and the standard's tables made (25 to 50 ms, about 6% of an empty run) to free
    memory the exit frees anyway. Every file was closed by then (outputs and the audit
    log are fsynced and closed as they are finished); at-exit handlers and module
    clean-up still run.

    numpy's BLAS (OpenBLAS, loaded with pydicom) is kept to one thread unless the caller
    says otherwise: this tool's parallelism is its worker processes, and OpenBLAS would
    start a thread per core in each, which spins for work it never gets at start-up and
    around every fork (about 0.1 s of CPU per run: 4% of a 1,000-file run's wall time).
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # read when numpy is first imported
    code = main()
    gc.freeze()
    sys.exit(code)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "listen":
            return _listen(args)
        if args.command == "profiles":
            return _profiles(args)
        if args.command == "keygen":
            return _keygen(args)
        if args.command == "review":
            return _review(args)
        return _report(args)
    except OutputInUseError as exc:
        print(f"anonymizer: error: {exc}", file=sys.stderr)
        return EXIT_OUTPUT_IN_USE
    except AnonymizerError as exc:
        print(f"anonymizer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("anonymizer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run_config(args: argparse.Namespace) -> RunConfig:
    """The :class:`RunConfig` of ``anonymizer run``'s parsed options (checked); the
    Python API's ``run`` builds its options through this too."""
    from anonymizer.pipeline import RunConfig
    from anonymizer.pipeline.layout import check_layout

    if args.jobs < 0 or args.batch_size < 1:
        raise _usage("--jobs must be >= 0 and --batch-size >= 1")
    if args.layout is not None:
        try:
            check_layout(args.layout)
        except ValueError as exc:
            raise _usage(f"--layout: {exc}") from None
    ends = _network(args)
    if args.rehash and ends["source_url"] is not None:
        raise _usage("--rehash applies to a folder IN (a network source's instances are "
                     "never fetched again once written)")
    return RunConfig(
        **ends, profile=args.profile,
        key_file=args.key_file, jobs=args.jobs, batch_size=args.batch_size, layout=args.layout,
        audit_path=args.audit, manifest_path=args.manifest, crosswalk_path=args.crosswalk,
        quarantine_dir=args.quarantine, force=args.force, wait_lock=args.wait_lock,
        timeout=args.timeout, rehash=args.rehash,
        backend=args.backend, scheduler=args.scheduler,
        progress=args.progress or (not args.no_progress and sys.stderr.isatty()))


def _run(args: argparse.Namespace) -> int:
    from anonymizer.pipeline import run

    summary = run(run_config(args))
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


def _verify(args: argparse.Namespace) -> int:
    import time

    from anonymizer.pipeline.progress import FileBar
    from anonymizer.pixels.stage import check_pixel_extras
    from anonymizer.profiles import load_profile
    from anonymizer.verify import manifest_pairs, verify_pairs
    from anonymizer.verify.report import Report, Totals

    if args.jobs < 0 or args.batch_size < 1:
        raise _usage("--jobs must be >= 0 and --batch-size >= 1")
    for what, folder in (("IN", args.input), ("OUT", args.output)):
        if not folder.is_dir():
            raise _usage(f"{folder}: {what} folder does not exist")
    if args.manifest is not None:
        pairs: Iterable[Any] = manifest_pairs(args.manifest, args.input, args.output)
        profile = args.profile
        if profile is not None:
            check_pixel_extras(load_profile(profile).settings.pixels)
    else:
        pairs, profile = _paired_through_audit(args)
    report = Report(sys.stdout, args.report, args.show_values, args.output, args.strict)
    totals = Totals()
    started = time.monotonic()
    bar = FileBar(unit="file", disable=args.no_progress or not sys.stderr.isatty(),
               dynamic_ncols=True, file=sys.stderr)
    try:
        for result in verify_pairs(pairs, profile, show_values=args.show_values,
                                   n_jobs=args.jobs, batch_size=args.batch_size,
                                   timeout=args.timeout):
            totals.add(result, args.strict)
            for line in report.add(result):
                bar.write(line, file=sys.stdout)
            bar.update(1)
    except BaseException:
        report.abandon()
        raise
    finally:
        bar.close()
    elapsed = time.monotonic() - started
    report.close(totals, elapsed)
    saved = f"; report: {args.report}" if args.report is not None else ""
    print(totals.line(elapsed) + saved, file=sys.stderr)
    return EXIT_OK if totals.clean else EXIT_FAILED


def _listen(args: argparse.Namespace) -> int:
    from anonymizer.gateway.forward import ListenConfig, listen
    from anonymizer.gateway.receiver import ReceiverConfig

    if args.jobs < 0 or args.batch_size < 1:
        raise _usage("--jobs must be >= 0 and --batch-size >= 1")
    if not 0 <= args.port <= 65535:
        raise _usage("--port must be 0..65535")
    for title in (args.ae_title, *args.allow_ae):
        if not 0 < len(title.strip()) <= 16 or "\\" in title or not title.isprintable():
            raise _usage(f"AE title {title!r}: 1 to 16 printable characters, no backslash")
    if args.retry_max <= 0:
        raise _usage("--retry-max must be > 0 seconds")
    from anonymizer.net.options import NetOptions
    from anonymizer.net.urls import check_ae_title

    net = NetOptions(ae_title=check_ae_title(args.dest_ae_title, "--dest-ae-title"),
                     token_file=args.token_file, ca_file=args.ca_file)
    summary = listen(ListenConfig(
        destination=args.destination, profile=args.profile, key_file=args.key_file,
        receiver=ReceiverConfig(ae_title=args.ae_title, port=args.port, bind=args.bind,
                                allow_ae=tuple(args.allow_ae), tls_cert=args.tls_cert,
                                tls_key=args.tls_key, tls_ca=args.tls_ca),
        spool_dir=args.spool, jobs=args.jobs, batch_size=args.batch_size, layout=args.layout,
        audit_path=args.audit, crosswalk_path=args.crosswalk, quarantine_dir=args.quarantine,
        force=args.force, wait_lock=args.wait_lock, timeout=args.timeout,
        metrics_path=args.metrics, status_interval=args.status_interval, net=net,
        retry_max=args.retry_max))
    counts = summary.counts
    print(f"anonymizer: received {summary.received}, forwarded {counts['written']}, failed "
          f"{counts['failed']}, duplicates {counts['duplicate']} in {summary.elapsed:.1f}s; "
          f"{summary.waiting} waiting in the spool; audit log: {summary.audit_path}",
          file=sys.stderr)
    if summary.stopped:
        print(f"anonymizer: {summary.stopped}", file=sys.stderr)
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
    from anonymizer.pipeline.audit import iter_records

    latest: dict[str, tuple[str, str | None]] = {}  # input -> (status, reason)
    runs = 0
    try:
        for record in iter_records(args.audit):  # streamed: the log may be large
            kind = record.get("type")
            if kind == "file" and "input" in record:
                latest[record["input"]] = (record["status"], record.get("reason"))
            elif kind == "run_start":
                runs += 1
    except OSError as exc:
        raise _usage(f"{args.audit}: {exc.strerror}") from None
    totals = Counter(status for status, _ in latest.values())
    reasons = Counter(reason for status, reason in latest.values() if status != "written")
    print(f"{len(latest)} inputs in {runs} run(s): " + ", ".join(
        f"{totals[s]} {s}" for s in ("written", "failed", "skipped")))
    for reason, number in reasons.most_common():
        print(f"  {number:6}  {reason}")
    return EXIT_FAILED if totals["failed"] else EXIT_OK


def _review(args: argparse.Namespace) -> int:
    from anonymizer.review import ReviewOptions, write_review

    if args.thumbnails < 0 or args.top < 1:
        raise _usage("--thumbnails must be >= 0 and --top >= 1")
    if (args.key_file is not None or args.profile is not None) and args.input is None:
        raise _usage("--key-file and --profile are used only with --input")
    findings = None
    if args.input is not None:
        _check_review_input(args)
        findings = _verify_findings(args)
    result = write_review(ReviewOptions(
        out_dir=args.output, html_path=args.html, audit_path=args.audit,
        thumbnails=args.thumbnails, top=args.top), findings)
    found = "" if result.findings is None else f", {result.findings} residual identifier(s)"
    unread = f", {result.unreadable} file(s) unreadable" if result.unreadable else ""
    print(f"anonymizer: review of {result.files} file(s){found}{unread} written to "
          f"{result.path} in {result.elapsed:.1f}s", file=sys.stderr)
    return EXIT_FAILED if result.findings else EXIT_OK


def _check_review_input(args: argparse.Namespace) -> None:
    """IN must be a folder apart from OUT, and the page is never written into it."""
    source, target = args.input.resolve(), args.output.resolve()
    if not source.is_dir():
        raise _usage(f"{args.input}: input folder does not exist")
    if source == target or source in target.parents or target in source.parents:
        raise _usage("IN and OUT must be separate folders")
    if source in args.html.resolve().parents:
        raise _usage("--html must not be inside IN")


def _paired_through_audit(args: argparse.Namespace) -> tuple[Any, str]:
    """OUT's outputs paired with IN's inputs through the audit log (``--key-file``), and
    the profile they were made with (``--profile``, else the built-in one the log
    records); the extras its pixel policy needs are checked before any pair."""
    from anonymizer.keyed import load_key
    from anonymizer.pixels.stage import check_pixel_extras
    from anonymizer.profiles import load_profile
    from anonymizer.verify import AuditPairs

    pairs = AuditPairs(args.input, args.output, load_key(args.key_file), args.audit)
    profile = args.profile or pairs.run.builtin_profile()
    check_pixel_extras(load_profile(profile).settings.pixels)  # one line, before any pair
    return pairs, profile


def _verify_findings(args: argparse.Namespace) -> Iterator[Any]:
    """``anonymizer verify IN OUT``'s findings for the page (no values: the page may be
    kept with the release); an output that could not be checked is a finding too."""
    from anonymizer.verify import Finding, verify_pairs

    pairs, profile = _paired_through_audit(args)
    for result in verify_pairs(pairs, profile, n_jobs=0):  # 0: every core
        yield from result.findings
        if result.error is not None:
            yield Finding(output=result.output, where="not checked", tag_path="",
                          kind=result.error)
