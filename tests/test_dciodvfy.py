"""Outputs stay valid DICOM: David Clunie's ``dciodvfy`` (Debian package ``dicom3tools``)
finds no error in a de-identified file that the file did not have before.

Every readable pydicom / pydicom-data test file is de-identified by the real ``anonymizer
run`` for each built-in profile; ``dciodvfy`` checks each input and each output against
its IOD. Its messages are normalised (values, UIDs and the file name stripped) so that the
same complaint about input and output compares equal.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import KEY_A, required_tool

PROFILES = ("basic", "default", "research")

#: New errors the standard itself leads to: (profile, normalised message) -> why.
_EMPTIED_SOURCE_IMAGES = (
    "Source Image Sequence is X/Z/U* in Table E.1-1 and Type 2 in the Segmentation's "
    "Derivation Image macro: the Basic Profile empties it (Z), while Referenced Series "
    "Sequence (Common Instance Reference module, not in the table) stays")
EXPECTED: dict[tuple[str, str], str] = {
    (profile, "Error - ReferencedSeriesSequence present but Instance does not reference "
              "Instances - attribute <ReferencedSeriesSequence>"): _EMPTIED_SOURCE_IMAGES
    for profile in ("basic", "default")
}

#: An input dciodvfy cannot parse past a broken header: it stops there and reports nothing
#: about the content, while the output, rewritten cleanly, is read whole.
_UNPARSED_INPUT = "Error - Tags out of order - trailing garbage, wrong transfer syntax, or " \
    "not valid DICOM"
#: Errors about content such an input already has: message -> why.
UNPARSED_INPUT_EXPECTED: dict[str, str] = {
    "Error - PixelData has incorrect value length - expected 0 dec - got 2 dec":
        "the input is a bare Pixel Data element without the Image Pixel module",
}

#: ``<value>`` after anything but the names dciodvfy puts in angle brackets.
_VALUE = re.compile(r"(?<!Element=)(?<!Module=)(?<!attribute )<[^<>]*>")
_UID = re.compile(r"\b\d+(?:\.\d+){2,}\b|(?<=UID )[0-9.]+$")


def _dciodvfy() -> str:
    return required_tool("dciodvfy", package="dicom3tools")


def normalise(line: str, name: str) -> str:
    """One dciodvfy message without what differs between an input and its output."""
    line = line.replace(name, "FILE")
    line = _VALUE.sub("<>", line)
    line = _UID.sub("UID", line)
    return " ".join(line.split())


def errors(dciodvfy: str, path: Path) -> frozenset[str]:
    """The normalised error messages dciodvfy gives for a file."""
    proc = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True,
                          errors="replace", check=False)
    lines = (proc.stdout + proc.stderr).splitlines()
    return frozenset(normalise(line, str(path)) for line in lines if line.startswith("Error"))


def new_errors(dciodvfy: str, inputs: Path, outputs: dict[str, Path]
               ) -> dict[str, dict[str, frozenset[str]]]:
    """Per profile, per output (relative path): errors its input did not have."""
    relative = sorted(str(p.relative_to(inputs)) for p in inputs.rglob("*") if p.is_file())
    jobs = [(None, name) for name in relative]
    jobs += [(profile, name) for profile, out in outputs.items() for name in relative
             if (out / name).is_file()]

    def check(job: tuple[str | None, str]) -> frozenset[str]:
        profile, name = job
        return errors(dciodvfy, (inputs if profile is None else outputs[profile]) / name)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        found = dict(zip(jobs, pool.map(check, jobs), strict=True))
    new: dict[str, dict[str, frozenset[str]]] = {profile: {} for profile in outputs}
    for (profile, name), messages in found.items():
        if profile is None:
            continue
        before = found[(None, name)]
        unparsed = _UNPARSED_INPUT in before
        extra = frozenset(m for m in messages - before if (profile, m) not in EXPECTED
                          and not (unparsed and m in UNPARSED_INPUT_EXPECTED))
        if extra:
            new[profile][name] = extra
    return new


def deidentify(inputs: Path, out: Path, profile: str, key_file: Path) -> subprocess.Popen[str]:
    """Start ``anonymizer run`` with the inputs' own paths kept in the output."""
    return subprocess.Popen(
        [sys.executable, "-m", "anonymizer", "run", "--profile", profile, "--key-file",
         str(key_file), "--layout", "mirror", "--jobs", "1", "--no-progress", str(inputs),
         str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_outputs_have_no_dciodvfy_error_their_inputs_did_not_have(
        readable_testdata: list[Path], tmp_path: Path) -> None:
    dciodvfy = _dciodvfy()
    inputs = tmp_path / "in"
    common = Path(os.path.commonpath([str(p) for p in readable_testdata]))
    for path in readable_testdata:
        target = inputs / path.relative_to(common)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY_A)
    outputs = {profile: tmp_path / profile for profile in PROFILES}
    runs = {profile: deidentify(inputs, out, profile, key_file)
            for profile, out in outputs.items()}
    for profile, run in runs.items():
        _, stderr = run.communicate()
        assert run.returncode in (0, 1), (profile, stderr)  # 1: some inputs refused
        assert "Traceback" not in stderr
    written = {profile: sum(1 for path in readable_testdata
                            if (out / path.relative_to(common)).is_file())
               for profile, out in outputs.items()}
    assert all(count > len(readable_testdata) // 2 for count in written.values()), written
    new = new_errors(dciodvfy, inputs, outputs)
    report = [f"{profile} {name}: {message}" for profile, files in new.items()
              for name, messages in sorted(files.items()) for message in sorted(messages)]
    assert not report, f"{len(report)} new dciodvfy errors:\n" + "\n".join(report)


def test_normalise_strips_values_uids_and_the_file_name() -> None:
    line = ("Error - Value invalid for this VR - (0x0020,0x000d) UI Study Instance UID  "
            "UI [1] = <1.2.3.4> - Character invalid  in /x/y.dcm")
    other = ("Error - Value invalid for this VR - (0x0020,0x000d) UI Study Instance UID  "
             "UI [1] = <2.25.9> - Character invalid  in /a/b.dcm")
    assert normalise(line, "/x/y.dcm") == normalise(other, "/a/b.dcm")
    kept = "Error - Missing attribute Type 1 Required Element=<SegmentLabel> Module=<Segment>"
    assert normalise(kept, "f") == kept
    assert normalise("Error - not listed ReferencedSOPInstanceUID 0", "f") \
        == normalise("Error - not listed ReferencedSOPInstanceUID 2.25.27097", "f")
