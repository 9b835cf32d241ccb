"""``anonymizer review``: the page made from real runs of ``sample_data/`` (and of images with
text drawn into them), read back as HTML and by headless Chromium (Debian ``chromium``).

Without Chromium the browser tests are skipped locally and fail in CI (``CI=true``), as
``tests/test_dciodvfy.py`` does for dciodvfy; ``.ci/run`` installs it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import SAMPLE_DATA, dcmread_quiet, one_line_error, required_tool
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from anonymizer import scrub
from anonymizer.cli import main
from anonymizer.io import NotDicomError, read_dataset
from anonymizer.review import ReviewFinding, ReviewOptions, write_review
from anonymizer.review.release import ReleaseStats, TopValues, scan_release

ANONYMIZER = [sys.executable, "-m", "anonymizer"]
#: The sample data's patients, as the folder names and headers write them (synthetic).
SAMPLE_PHI = ("DOE^JOHN", "DOE", "JOHN", "12345678", "MÜLLER", "MULLER", "ANNA", "MRN-0042",
              "ROE^RICHARD", "RICHARD", "99887766", "Springfield", "Riviera")
_DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "source", "track", "wbr"})


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ANONYMIZER_KEY"}
    return subprocess.run([*ANONYMIZER, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, check=False)


class Dom(HTMLParser):
    """What the tests ask of a page: every element with its attributes, and the text
    inside each element that has an id."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text_by_id: dict[str, str] = {}
        #: table id -> its rows (header row included), each a list of cell texts
        self.tables: dict[str, list[list[str]]] = {}
        self._open: list[tuple[str, str | None]] = []
        self._tables: list[list[list[str]]] = []
        self._in_cell = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        if tag in _VOID:
            return
        self._open.append((tag, attributes.get("id")))
        if attributes.get("id"):
            self.text_by_id[attributes["id"]] = ""
        if tag == "table":
            self._tables.append(self.tables.setdefault(attributes.get("id") or "", []))
        elif tag == "tr" and self._tables:
            self._tables[-1].append([])
        elif tag in ("td", "th") and self._tables and self._tables[-1]:
            self._tables[-1][-1].append("")
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._tables:
            self._tables.pop()
        elif tag in ("td", "th"):
            self._in_cell = False
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        for _, element_id in self._open:
            if element_id:
                self.text_by_id[element_id] += data
        if self._in_cell and self._tables and self._tables[-1]:
            self._tables[-1][-1][-1] += data

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.elements if name == tag]

    def number(self, element_id: str) -> int:
        return int(self.text_by_id[element_id].strip())

    def rows(self, table_id: str) -> dict[str, str]:
        """First cell -> second cell of each row of a table but its header row."""
        return {row[0].strip(): row[1].strip() for row in self.tables[table_id][1:]}


@dataclass(frozen=True)
class Release:
    source: Path
    out: Path
    page: Path

    @property
    def html(self) -> str:
        return self.page.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory,
            key_path: Path) -> Callable[[str], Release]:
    """The sample data de-identified by ``anonymizer run`` with a profile, and its page
    (made once per profile)."""
    made: dict[str, Release] = {}

    def make(profile: str) -> Release:
        if profile not in made:
            root = tmp_path_factory.mktemp(f"release-{profile}")
            out, page = root / "out", root / "review.html"
            proc = cli("run", "--profile", profile, "--key-file", key_path, "--no-progress",
                       SAMPLE_DATA, out)
            assert proc.returncode == 0, proc.stderr
            proc = cli("review", out, "--html", page)
            assert proc.returncode == 0, proc.stderr
            assert proc.stderr.startswith("anonymizer: review of 12 file(s) written to")
            made[profile] = Release(SAMPLE_DATA, out, page)
        return made[profile]

    return make


def _run_and_review(folder: Path, source: Path, key_path: Path, profile: str,
                    *review_options: str) -> tuple[Path, Path]:
    """``anonymizer run`` with a profile written into ``folder``, then ``anonymizer review``;
    returns OUT and the page."""
    profile_path = folder / "profile.yaml"
    profile_path.write_text(profile)
    out, page = folder / "out", folder / "review.html"
    proc = cli("run", "-p", profile_path, "--key-file", key_path, "--no-progress", source, out)
    assert proc.returncode == 0, proc.stderr
    proc = cli("review", out, "--html", page, *review_options)
    assert proc.returncode == 0, proc.stderr
    return out, page


def _outputs(out: Path) -> list[Dataset]:
    return [dcmread_quiet(p) for p in sorted(out.rglob("*.dcm"))]


# ----------------------------------------------------------------------------------
# The page of sample_data: sections and values
# ----------------------------------------------------------------------------------

def test_the_page_has_every_section_and_the_release_counts(release) -> None:
    made = release("default")
    dom = Dom(made.html)
    outputs = _outputs(made.out)
    sections = {attrs.get("id") for attrs in dom.all("section")}
    assert {"summary", "runs", "verify", "contents", "dates", "images", "attributes",
            "private", "notes"} <= sections
    nav_links = {attrs["href"] for attrs in dom.all("a") if attrs.get("href", "").startswith("#")}
    assert {f"#{s}" for s in sections} <= nav_links
    assert dom.number("count-files") == len(outputs) == 12
    assert dom.number("count-patients") == len({ds.PatientID for ds in outputs}) == 3
    assert dom.number("count-studies") == len({ds.StudyInstanceUID for ds in outputs}) == 5
    assert dom.number("count-series") == len({ds.SeriesInstanceUID for ds in outputs}) == 7
    assert dom.rows("modalities") == {"CT": "6", "MR": "5", "SR": "1"}
    assert dom.rows("sop-classes") == {"CT Image Storage": "6", "MR Image Storage": "4",
                                       "Basic Text SR Storage": "1",
                                       "Enhanced MR Image Storage": "1"}


def test_the_runs_come_from_the_audit_log(release) -> None:
    made = release("default")
    records = [json.loads(line) for line in (made.out / "audit.jsonl").open()]
    start = next(r for r in records if r["type"] == "run_start")
    dom = Dom(made.html)
    runs = dom.text_by_id["runs"]
    assert start["key_fingerprint"] in runs and start["profile_sha256"][:16] in runs
    assert "profile default" in runs and start["layout"] in runs
    assert dom.rows("outcomes") == {"written": "12", "failed": "0", "skipped": "1"}
    assert dom.rows("skips") == {"not DICOM (no DICM marker and not a raw dataset)": "1"}
    assert "No input failed." in runs


def test_every_kept_value_is_listed_with_counts_and_files(release) -> None:
    made = release("default")
    html = made.html
    dom = Dom(html)
    outputs = _outputs(made.out)
    for pseudonym in {ds.PatientID for ds in outputs}:
        files = sum(1 for ds in outputs if ds.PatientID == pseudonym)
        # the PatientID attribute's value table: value, count, files
        assert re.search(rf"<td class=\"value\">{pseudonym}</td>\s*<td class=\"num\">{files}"
                         rf"</td><td class=\"num\">{files}</td>", html), pseudonym
    summaries = [s for s in re.findall(r"<summary>(.*?)</summary>", html, re.S)]
    patient_name = next(s for s in summaries if "PatientName" in s and "(0010,0010)" in s)
    assert "in 12 files · 3 distinct values" in patient_name
    # sequences are walked: SR content items are listed under their path
    assert any("ContentSequence &gt; TextValue" in s for s in summaries)
    # the basic profile removes every private element
    assert "no-private" in dom.text_by_id
    assert "No private attribute is left in the release." in dom.text_by_id["private"]


def test_private_values_kept_are_listed_by_creator(tmp_path: Path, key_path: Path) -> None:
    """A profile keeping two creators' blocks (at their usual slots, an unusual one, inside
    a sequence item): the page lists exactly the creators and every value the outputs hold."""
    out, page = _run_and_review(tmp_path, SAMPLE_DATA, key_path, (
        "name: keep-private\nextends: basic\nprivate:\n"
        '  keep_creators: [GEMS_IDEN_01, "ACME HOSPITAL PHI 1.0"]\n'))
    creators: set[str] = set()
    values: set[str] = set()
    for ds in _outputs(out):
        for elem in ds.iterall():
            if not elem.tag.is_private or elem.VR == "SQ":
                continue
            value = elem.value.decode("latin-1") if isinstance(elem.value, bytes) \
                else str(elem.value)
            (creators if elem.tag.element <= 0xFF else values).add(value.strip(" \x00"))
    assert creators == {"GEMS_IDEN_01", "ACME HOSPITAL PHI 1.0"}
    dom = Dom(page.read_text(encoding="utf-8"))
    headings = {dom.text_by_id[f"private-{i}"].split(" (")[0] for i in range(len(creators))}
    assert headings == creators
    listed = {row[0] for table, rows in dom.tables.items() if not table
              for row in rows[1:] if len(row) == 4}
    assert values and values <= listed, values - listed


def test_values_that_look_like_identifiers_are_marked(tmp_path: Path, key_path: Path) -> None:
    """A free-text value the profile keeps, holding an e-mail address, a titled name and a
    telephone number: marked by the generic shapes, and its attribute unfolded."""
    source = tmp_path / "in"
    source.mkdir()
    ds = dcmread_quiet(SAMPLE_DATA / "ROE^RICHARD_99887766" / "20220911_CT_HEAD" / "IM0001.dcm")
    ds.ImageComments = "ask Dr Hibbert, hibbert@example.org or +1 555 010 0199"
    ds.save_as(source / "one.dcm")
    _, page = _run_and_review(tmp_path, source, key_path, (
        "name: keep-comments\nextends: basic\nactions:\n  ImageComments: keep\n"))
    html = page.read_text(encoding="utf-8")
    marks = re.findall(r'<mark title="([^"]+)">([^<]+)</mark>', html)
    assert ("titled name", "Hibbert") in marks
    assert ("e-mail", "hibbert@example.org") in marks
    assert ("telephone number", "+1 555 010 0199") in marks
    comments = re.search(r'<details class="attr" id="[^"]+" open>\s*<summary><span '
                         r'class="kw">ImageComments</span>', html)
    assert comments is not None


@pytest.mark.parametrize("profile", ["default", "research"])
def test_no_identifier_of_the_inputs_is_on_the_page(release, profile: str) -> None:
    """The page holds nothing of the inputs that the release does not hold itself:
    research keeps the device identity (Station Name, Device Serial Number) on purpose,
    and the page shows it as a kept value; default keeps none of them."""
    made = release(profile)
    text = _DATA_URI.sub("", made.html)
    released = {value.value for path in sorted(made.out.rglob("*.dcm"))
                for value in scrub.collect(dcmread_quiet(path)).values}
    assert (profile == "research") == bool(released & {"SGH-CT01", "GE-CT-0000123"})
    # every input's identifiers at once: one search of the page instead of twelve
    values: set[scrub.Identifier] = set()
    dates: set[bytes] = set()
    uids: set[str] = set()
    checked = 0
    for path in sorted(SAMPLE_DATA.rglob("*")):
        if not path.is_file():
            continue
        try:
            result = read_dataset(path)
        except NotDicomError:
            continue
        identifiers = scrub.collect(result.dataset)
        result.close()
        values |= identifiers.values
        dates |= {day.strftime("%Y%m%d").encode() for day in identifiers.dates}
        uids |= identifiers.uids
        checked += 1
    assert checked == 12 and values and dates and uids
    inputs = scrub.Identifiers(frozenset(values), frozenset(dates))
    leaks = [(f.label, text[f.start:f.end]) for f in inputs.find(text)
             if f.identifier is not None and f.identifier.value not in released
             or f.kind == scrub.DATE and f.date is not None and f.date.date in inputs.dates]
    assert leaks == []
    assert [uid for uid in uids if uid in text] == []
    for value in SAMPLE_PHI:  # as a word, in any case ("does" is not "DOE")
        word = rf"(?<![^\W_]){re.escape(value)}(?![^\W_])"
        assert re.search(word, text, re.IGNORECASE) is None, value


def test_the_study_dates_chart_keeps_each_patients_intervals(release) -> None:
    """research shifts each patient's dates by one offset: the chart shows the days
    between a patient's studies as in the input (2019-01-01 to 2020-03-15: 439 days;
    2018-02-20 to 2022-09-11: 1664 days), and the profile's shift range."""
    made = release("research")
    dom = Dom(made.html)
    dates = dom.text_by_id["dates"]
    assert "between -365 and -1 days" in dates
    assert "MODIFIED (12 files)" in dates
    chart = dom.text_by_id["date-chart"]
    assert "439 d" in chart and "1664 d" in chart
    assert len(dom.all("circle")) == 5  # one per study
    assert len([a for a in dom.all("g") if a.get("class") == "patient"]) == 3
    # basic removes the dates: no chart, and the page says why
    default = Dom(release("default").html)
    assert "no-dates" in default.text_by_id and "date-chart" not in default.text_by_id
    assert "dates removed or emptied" in default.text_by_id["dates"]


# ----------------------------------------------------------------------------------
# Images: flagged by the pixel stage first, then a few per series
# ----------------------------------------------------------------------------------

def _ultrasound_with_text(pixels: np.ndarray, instance: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1234.3.{instance}"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1234.1.9"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1234.2.9"
    ds.Modality, ds.Manufacturer = "US", "ACME"
    ds.PatientName, ds.PatientID = "DOE^JOHN", "12345678"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = pixels.tobytes()
    return ds


@pytest.fixture(scope="module")
def ultrasound_release(tmp_path_factory: pytest.TempPathFactory, key_path: Path) -> Release:
    """Five ultrasound images with a name drawn at the top and an ID at the bottom; a
    region rule blanks the top bar of the first two (by Rows), the others are untouched."""
    root = tmp_path_factory.mktemp("ultrasound")
    source = root / "in"
    source.mkdir()
    font = ImageFont.load_default(size=16)
    for instance in range(5):
        rows = 200 if instance < 2 else 210
        canvas = Image.new("L", (240, rows), 30)
        draw = ImageDraw.Draw(canvas)
        draw.ellipse((40, 40, 200, rows - 40), fill=110)
        draw.text((6, 4), "DOE JOHN", fill=255, font=font)
        draw.text((6, rows - 22), "12345678", fill=255, font=font)
        _ultrasound_with_text(np.asarray(canvas), instance).save_as(
            source / f"US{instance}.dcm", enforce_file_format=True)
    out, page = _run_and_review(root, source, key_path, (
        "name: blank-top\nextends: basic\npixels:\n  ocr: \"off\"\n  regions:\n"
        "    - name: top bar\n      match: {Modality: US, Rows: 200}\n"
        "      blank: [[0, 0, 240, 26]]\n"), "--thumbnails", "2")
    return Release(source, out, page)


def _png(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_flagged_images_come_first_then_a_few_per_series(ultrasound_release: Release) -> None:
    html = ultrasound_release.html
    dom = Dom(html)
    flagged_part = html[html.index('id="flagged"'):html.index('id="per-series"')]
    flagged = re.findall(r'<img src="([^"]+)"', flagged_part)
    assert len(flagged) == 2  # the two images the region rule cleaned
    assert flagged_part.count("1 region(s) blanked; rules: top bar") == 2
    for uri in flagged:
        image = np.asarray(_png(uri).convert("L"))
        assert max(image.shape) == 240  # shown whole (smaller than the flagged size)
        top, body = image[:24], image[30:-30]
        assert top.max() <= 35 < body.max()  # the name is blanked, the image is not
        assert image[-20:].max() == 255  # the ID drawn at the bottom is there to see
    series_part = html[html.index('id="per-series"'):html.index('id="attributes"')]
    assert len(re.findall(r"<img ", series_part)) == 2  # --thumbnails 2, one series
    assert dom.number("count-flagged") == 2


def test_thumbnails_are_small_pngs(ultrasound_release: Release) -> None:
    uris = [attrs["src"] for attrs in Dom(ultrasound_release.html).all("img")]
    assert len(uris) == 4
    for uri in uris:
        image = _png(uri)
        assert image.format == "PNG" and max(image.size) <= 384


# ----------------------------------------------------------------------------------
# verify's findings
# ----------------------------------------------------------------------------------

FINDINGS = (
    ReviewFinding("A/1.dcm", "element", "(0008,1030)", "PatientName surname"),
    ReviewFinding("A/1.dcm", "private", "(0009,xx10)", "PatientID digits"),
    ReviewFinding("A/2.dcm", "pixels", "(7FE0,0010)", "StudyDate"),
    ReviewFinding("B/ANON/3.dcm", "path", "", "PatientID"),
)


def test_findings_are_counted_and_listed_without_values(release, tmp_path: Path) -> None:
    made = release("default")
    page = tmp_path / "page.html"
    result = write_review(ReviewOptions(made.out, page), FINDINGS)
    assert result.findings == 4
    dom = Dom(page.read_text(encoding="utf-8"))
    assert dom.number("findings-total") == dom.number("count-findings") == 4
    by_place = dom.rows("findings-by-place")
    assert by_place == {"element": "1", "private": "1", "file meta": "0", "path": "1",
                        "raw bytes": "0", "pixels": "1"}
    listed = dom.text_by_id["findings"]
    assert "PatientName surname" in listed and "B/ANON/3.dcm" in listed
    assert dom.tables["findings"][0] == ["Output file", "Where", "Tag path", "Kind"]
    assert stat.S_IMODE(page.stat().st_mode) == 0o644


def test_no_findings_says_so_and_no_verify_says_it_was_not_run(release, tmp_path: Path) -> None:
    made = release("default")
    page = tmp_path / "page.html"
    write_review(ReviewOptions(made.out, page), [])
    assert "verify-clean" in Dom(page.read_text(encoding="utf-8")).text_by_id
    assert "Not checked" in Dom(made.html).text_by_id["verify"]


def test_input_runs_verify_and_shows_its_findings(release, tmp_path: Path, key_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``--input IN --key-file K``: verify pairs OUT with IN through the audit log; a
    clean release says so (exit 0), a name written back into an output is listed by
    kind, never by value (exit 1)."""
    monkeypatch.delenv("ANONYMIZER_KEY", raising=False)
    made = release("default")
    clean_page = tmp_path / "clean.html"
    assert main(["review", str(made.out), "--html", str(clean_page), "--input",
                 str(SAMPLE_DATA), "--key-file", str(key_path)]) == 0
    assert "verify-clean" in Dom(clean_page.read_text(encoding="utf-8")).text_by_id
    leaky = tmp_path / "leaky"
    shutil.copytree(made.out, leaky)
    for output in leaky.rglob("*.dcm"):
        ds = pydicom.dcmread(output)
        ds.StudyDescription = "follow-up DOE JOHN ROE RICHARD MULLER ANNA"
        ds.save_as(output)
    page = tmp_path / "leaky.html"
    assert main(["review", str(leaky), "--html", str(page), "--input", str(SAMPLE_DATA),
                 "--key-file", str(key_path)]) == 1
    html = page.read_text(encoding="utf-8")
    dom = Dom(html)
    assert dom.number("findings-total") >= 12
    assert "StudyDescription" in dom.text_by_id["findings"] or \
        "(0008,1030)" in dom.text_by_id["findings"]
    for value in ("RICHARD", "MULLER", "ANNA"):  # the findings name kinds, not values
        assert value not in dom.text_by_id["findings"]


def test_input_with_a_profile_of_ones_own(tmp_path: Path, key_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A release made with a custom profile: verify needs its name (--profile), as
    ``anonymizer verify`` does."""
    monkeypatch.delenv("ANONYMIZER_KEY", raising=False)
    profile = tmp_path / "mine.yaml"
    profile.write_text("name: mine\nextends: default\n")
    out = tmp_path / "out"
    assert main(["run", "--no-progress", "-p", str(profile), "--key-file", str(key_path),
                 str(SAMPLE_DATA), str(out)]) == 0
    page = tmp_path / "page.html"
    arguments = ["review", str(out), "--html", str(page), "--input", str(SAMPLE_DATA),
                 "--key-file", str(key_path)]
    assert main(arguments) == 2  # not a built-in profile: it must be named
    assert main([*arguments, "--profile", str(profile)]) == 0
    assert "verify-clean" in Dom(page.read_text(encoding="utf-8")).text_by_id


def test_findings_with_values_make_the_page_phi(release, tmp_path: Path) -> None:
    made = release("default")
    with_value = [ReviewFinding("A/1.dcm", "element", "(0008,1030)", "PatientName surname",
                                "DOE")]
    inside = made.out / "phi.html"
    with pytest.raises(Exception, match="PHI.*outside OUT"):
        write_review(ReviewOptions(made.out, inside), with_value)
    assert not inside.exists()
    page = tmp_path / "phi.html"
    write_review(ReviewOptions(made.out, page), with_value)
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    dom = Dom(page.read_text(encoding="utf-8"))
    assert dom.tables["findings"][0][-1] == "Value" and dom.tables["findings"][1][-1] == "DOE"
    assert "it is PHI" in page.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------------
# Bounded memory
# ----------------------------------------------------------------------------------

def test_top_values_stay_bounded_and_the_frequent_ones_exact() -> None:
    values = TopValues(capacity=10)
    for serial in range(5000):
        values.add(f"unique-{serial}", serial)
        values.add("frequent", serial)
        values.add("frequent", serial)  # twice in one file: one file, two occurrences
        if serial % 2:
            values.add("half", serial)
        assert len(values.entries) <= 20
    assert values.total == 5000 * 3 + 2500
    top = values.top(2)
    assert (top[0].value, top[0].count, top[0].files) == ("frequent", 10000, 5000)
    assert (top[1].value, top[1].count, top[1].files) == ("half", 2500, 2500)
    assert values.distinct is None and values.pruned_max == 1
    exact = TopValues(capacity=10)
    for serial in range(15):
        exact.add(str(serial % 4), serial)
    assert exact.distinct == 4 and exact.pruned_max == 0


def test_a_large_release_keeps_bounded_values_and_thumbnails(tmp_path: Path) -> None:
    """300 files of one series, each with its own comment: the scan keeps at most
    2 * capacity comments and three thumbnails, and counts every file exactly."""
    template = dcmread_quiet(SAMPLE_DATA / "ROE^RICHARD_99887766" / "20220911_CT_HEAD"
                             / "IM0001.dcm")
    for number in range(300):
        template.ImageComments = f"comment {number}"
        template.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1234.9.{number}"
        template.save_as(tmp_path / f"{number:04d}.dcm")
    stats = scan_release(tmp_path, ReleaseStats(top=5, thumbnails_per_series=3),
                         frozenset(), {}, None)
    assert stats.files == 300 and len(stats.series_uids) == 1
    comments = next(a for a in stats.attributes.values() if a.label == "ImageComments")
    assert comments.files == 300 and comments.values.total == 300
    assert len(comments.values.entries) <= 2 * stats.capacity
    series = next(iter(stats.series.values()))
    assert series.files == 300 and len(series.thumbnails) == 3


# ----------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------

def test_the_page_may_live_in_out_and_is_not_read_as_part_of_the_release(release) -> None:
    made = release("default")
    page = made.out / "review.html"
    for _ in range(2):  # the second run replaces the page it wrote
        proc = cli("review", made.out, "--html", page)
        assert proc.returncode == 0, proc.stderr
    dom = Dom(page.read_text(encoding="utf-8"))
    assert dom.number("count-files") == 12
    assert "not DICOM" not in dom.text_by_id["summary"]
    assert not [p for p in made.out.iterdir() if p.name.startswith(".anonymizer-tmp-")]
    page.unlink()


def test_a_folder_without_audit_log_is_described_as_it_is(release, tmp_path: Path) -> None:
    """Files from anywhere (here a run's output without its log, a stray text file and a
    truncated DICOM file): the page says what was done is unknown, and lists what is not
    DICOM and what cannot be read."""
    out = tmp_path / "out"
    shutil.copytree(release("default").out, out)
    (out / "audit.jsonl").unlink()
    (out / "notes.txt").write_text("a note someone left")
    whole = next(out.rglob("*.dcm")).read_bytes()
    (out / "cut.dcm").write_bytes(whole[:len(whole) // 2])
    page = tmp_path / "page.html"
    result = write_review(ReviewOptions(out, page))
    assert result.files == 12 and result.findings is None and result.unreadable == 1
    dom = Dom(page.read_text(encoding="utf-8"))
    assert "No audit log" in dom.text_by_id["runs"]
    assert dom.number("count-files") == 12
    assert "notes.txt" in dom.text_by_id["notes"]
    [(name, reason)] = [tuple(row) for row in dom.tables["unreadable"][1:]]
    assert name == "cut.dcm" and reason.startswith("read: truncated")


@pytest.mark.parametrize("case", ["no OUT", "audit log", "foreign file", "folder",
                                  "key without input", "negative thumbnails", "top 0",
                                  "input missing", "input without key", "audit missing"])
def test_one_line_errors(release, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         case: str) -> None:
    made = release("default")
    foreign = tmp_path / "notes.html"
    foreign.write_text("<html>someone else's page</html>")
    args = {
        "no OUT": [tmp_path / "nothing", "--html", tmp_path / "p.html"],
        "audit log": [made.out, "--html", made.out / "audit.jsonl"],
        "foreign file": [made.out, "--html", foreign],
        "folder": [made.out, "--html", tmp_path],
        "key without input": [made.out, "--html", tmp_path / "p.html", "--key-file", "k"],
        "negative thumbnails": [made.out, "--html", tmp_path / "p.html", "--thumbnails", "-1"],
        "top 0": [made.out, "--html", tmp_path / "p.html", "--top", "0"],
        "input missing": [made.out, "--html", tmp_path / "p.html", "--input",
                          tmp_path / "nothing"],
        "input without key": [made.out, "--html", tmp_path / "p.html", "--input",
                              SAMPLE_DATA],
        "audit missing": [made.out, "--html", tmp_path / "p.html", "--audit",
                          tmp_path / "none.jsonl"],
    }[case]
    before = (made.out / "audit.jsonl").read_bytes()
    # in this process (the command line as main() reads it): ten subprocesses are slow
    assert main(["review", *map(str, args)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anonymizer: error:"), lines
    assert foreign.read_text() == "<html>someone else's page</html>"
    assert (made.out / "audit.jsonl").read_bytes() == before
    assert not (tmp_path / "p.html").exists()


def test_a_missing_extra_is_one_line_naming_it(release, tmp_path: Path) -> None:
    made = release("default")
    code = ("import sys; sys.modules['jinja2'] = None\n"
            "from anonymizer.cli import main\n"
            f"sys.exit(main(['review', {str(made.out)!r}, '--html', "
            f"{str(tmp_path / 'p.html')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    line = one_line_error(proc)
    assert "pip install 'anonymizer[review]'" in line


# ----------------------------------------------------------------------------------
# In a real browser
# ----------------------------------------------------------------------------------

def _browser(chromium: str, profile_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # --no-sandbox: tests run as root in CI; a profile folder of its own, so that runs
    # beside each other (or a desktop Chromium) do not share one
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", "--disable-dev-shm-usage",
                           f"--user-data-dir={profile_dir}", *args],
                          capture_output=True, text=True, timeout=180, check=False)


def test_chromium_renders_the_page(release, ultrasound_release: Release,
                                   tmp_path: Path) -> None:
    chromium = required_tool("chromium", "chromium-browser", package="chromium")
    made = release("research")
    proc = _browser(chromium, tmp_path / "profile", "--dump-dom", made.page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = Dom(proc.stdout)
    assert len(dom.all("table")) >= 10
    assert dom.number("count-files") == 12 and dom.number("count-patients") == 3
    assert dom.rows("outcomes") == {"written": "12", "failed": "0", "skipped": "1"}
    assert len(dom.all("circle")) == 5  # the inline SVG chart, as the browser built it
    images = dom.all("img")
    assert len(images) == 11  # the first 3 files of each series: 2+1+2+1+2+3 (SR: none)
    for attrs in images:
        assert _png(attrs["src"]).size[0] > 0
    # nothing refers outside the page: links are anchors, images data: URIs
    for tag, attrs in dom.elements:
        for name in ("src", "href"):
            if name in attrs:
                assert attrs[name].startswith(("#", "data:image/png;base64,")), (tag, attrs)
    assert not dom.all("script") and not dom.all("link")
    [policy] = [a["content"] for a in dom.all("meta")
                if a.get("http-equiv") == "Content-Security-Policy"]
    assert policy.startswith("default-src 'none'; img-src data:")

    shot = tmp_path / "page.png"
    proc = _browser(chromium, tmp_path / "profile", f"--screenshot={shot}",
                    "--window-size=1280,2400", ultrasound_release.page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    image = Image.open(shot)
    assert image.size == (1280, 2400)
    assert len(image.convert("RGB").getcolors(1 << 20) or ()) > 50  # text, tables, images
