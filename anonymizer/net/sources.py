"""Network sources: what to pull (query keys or study UIDs) and the instances it names.

A source answers three levels of query (studies, a study's series, a series' instances)
and fetches one instance to a file. :func:`list_instances` walks the levels lazily: one
study's series and instances are asked for only when the study before them is done.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydicom.datadict import dictionary_VR, tag_for_keyword

from anonymizer.errors import UsageError
from anonymizer.net.options import NetOptions
from anonymizer.net.urls import parse_endpoint

#: Keys matched at the series level; every other key is matched at the study level
#: (patient and study attributes, ModalitiesInStudy).
SERIES_KEYS = frozenset({"Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription",
                         "BodyPartExamined", "SeriesDate", "SeriesTime", "ProtocolName",
                         "Laterality"})
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_uid(text: str) -> bool:
    return len(text) <= 64 and bool(_UID.match(text))


@dataclass(frozen=True)
class Instance:
    """One instance a source lists (the UIDs are PHI: never logged)."""

    study: str
    series: str
    sop: str
    sop_class: str = ""


@dataclass(frozen=True)
class Selection:
    """What to pull: study- and series-level matching keys, and/or a list of studies.

    PHI (names, IDs, dates): never logged.
    """

    study_keys: dict[str, str] = field(default_factory=dict)
    series_keys: dict[str, str] = field(default_factory=dict)
    studies: tuple[str, ...] | None = None


def parse_selection(queries: list[str], studies_file: Path | None) -> Selection:
    """``--query KEY=VALUE`` (repeatable) and ``--studies FILE`` as a :class:`Selection`.

    Raises
    ------
    UsageError
        Neither given (never the whole archive by accident), a key that is not a DICOM
        keyword, a line of the studies file that is not a UID.
    """
    if not queries and studies_file is None:
        raise UsageError("a network source needs --query KEY=VALUE or --studies FILE "
                         "(what to pull; never the whole archive by accident)")
    study_keys: dict[str, str] = {}
    series_keys: dict[str, str] = {}
    for query in queries:
        key, equals, value = query.partition("=")
        key = key.strip()
        if not equals or not key:
            raise UsageError("--query takes KEY=VALUE, e.g. --query StudyDate=20240101-20240131")
        tag = tag_for_keyword(key)
        if tag is None:
            raise UsageError(f"--query: {key} is not a DICOM keyword")
        if dictionary_VR(tag) == "SQ":
            raise UsageError(f"--query: {key} is a sequence; match on its items' keys instead")
        target = series_keys if key in SERIES_KEYS else study_keys
        if key in target:
            raise UsageError(f"--query: {key} given twice")
        target[key] = value
    studies = None
    if studies_file is not None:
        studies = tuple(_read_studies(studies_file))
    return Selection(study_keys, series_keys, studies)


def _read_studies(path: Path) -> Iterator[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: --studies: "
                         f"{getattr(exc, 'strerror', None) or 'not UTF-8 text'}") from None
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not is_uid(text):  # the line itself is not quoted: it may be PHI
            raise UsageError(f"{path}:{number}: --studies: not a Study Instance UID")
        yield text


class Source(Protocol):
    """What the runner needs of a network source."""

    def probe(self) -> None:
        """Reach the peer once; raise RefusedError/TransientError when it will not work."""

    def find_studies(self, keys: dict[str, str]) -> Iterator[str]: ...

    def find_series(self, study: str, keys: dict[str, str]) -> Iterator[str]: ...

    def find_instances(self, study: str, series: str) -> Iterator[Instance]: ...

    def fetch(self, instance: Instance, target: Path) -> None:
        """Write the instance, as stored, to ``target`` (a Part 10 file)."""

    def close(self) -> None: ...


def list_instances(source: Source, selection: Selection) -> Iterator[Instance]:
    """Every instance the selection names, study by study, each once."""
    if selection.studies is None:
        studies: Iterator[str] = source.find_studies(selection.study_keys)
    else:
        studies = (found for uid in dict.fromkeys(selection.studies)
                   for found in source.find_studies({**selection.study_keys,
                                                     "StudyInstanceUID": uid}))
    # What a server answers becomes URLs, query keys and the spool file's name: anything
    # but a UID (``../x``, ``/etc/...``, an empty answer) is skipped here, for every source.
    seen: set[str] = set()
    for study in dict.fromkeys(filter(is_uid, studies)):
        for series in dict.fromkeys(filter(is_uid, source.find_series(
                study, selection.series_keys))):
            for instance in source.find_instances(study, series):
                if is_uid(instance.sop) and instance.sop not in seen:
                    seen.add(instance.sop)
                    yield instance


def open_source(url: str, options: NetOptions) -> Source:
    """The source a ``dicomweb+http(s)://`` or ``dimse://`` URL names (not probed)."""
    endpoint = parse_endpoint(url)
    if endpoint.kind == "dimse":
        from anonymizer.net.dimse import DimseSource

        return DimseSource(endpoint, options.ae_title, options.move_port,
                           ca_file=options.ca_file)
    if options.move_port is not None:
        raise UsageError("--move-port is for a dimse:// source")
    from anonymizer.net.credentials import http_settings
    from anonymizer.net.dicomweb import DicomWebClient

    settings = http_settings(endpoint.host, options.token_file, options.ca_file)
    return DicomWebClient(endpoint.base_url, settings, "source")
