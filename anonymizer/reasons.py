"""What a failure reason may say: the one place that decides it.

A failure reason reaches the audit log, the quarantine list, ``anonymizer report`` and
the terminal summary, none of which may hold PHI. So a reason is built only from a fixed
vocabulary:

- the stage that failed (:data:`STAGES`);
- our own exceptions' messages (:class:`anonymizer.errors.AnonymizerError` and the
  skip reasons of the reader), which are written from fixed phrases, tags as
  ``(gggg,eeee)``, keywords, standard terms and counts, never a value of a file
  (``tests/test_reasons.py`` checks every such message in the package);
- for an ``OSError`` of the operating system, the C library's fixed phrase for its errno
  (never ``strerror`` or ``filename`` as the exception carries them: a path may be PHI);
- for anything else, only the name of the exception's class, when the class comes from
  a module we know (:data:`KNOWN_MODULES`), else ``internal error``. A third-party
  exception's text is never used: pydicom, numpy, decoders, HTTP libraries and servers
  quote values of the file (a name, an ID, a date) in their messages.
"""

from __future__ import annotations

import errno
import os

#: The stages a reason may start with (what each is in the README's reason table).
STAGES = frozenset({
    "read", "de-identify", "write", "send", "fetch", "source", "timeout",
    # anonymizer verify and review
    "input", "output", "pixels", "review", "decode",
})

#: Top-level modules whose exception class names a reason may give. A class name is
#: code, not data; these are the modules whose exceptions can reach a worker's handler.
KNOWN_MODULES = frozenset({
    "anonymizer", "builtins", "pydicom", "numpy", "PIL", "pylibjpeg", "openjpeg",
    "libjpeg", "rle", "jpeg_ls", "pyjpegls", "cv2", "onnxruntime", "rapidocr", "yaml",
    "joblib", "loky", "requests", "urllib3", "http", "pynetdicom", "ssl", "socket",
    "struct", "zlib", "json", "concurrent", "multiprocessing", "asyncio", "io", "mmap",
    "codecs", "encodings", "pickle", "_pickle", "csv", "_csv", "tempfile", "shutil",
    "subprocess", "select", "signal", "threading", "queue", "binascii", "base64",
    "email", "xml", "zipfile", "gzip", "lzma", "bz2", "dask", "distributed", "tornado",
})

#: What a reason says for an exception whose class is not ours to name.
INTERNAL_ERROR = "internal error"


def exception_class(exc: BaseException) -> str:
    """The name of ``exc``'s class if it comes from a known module, else ``internal error``.

    Parameters
    ----------
    exc : BaseException
        Any exception.

    Returns
    -------
    str
        A Python identifier (``ValueError``, ``InvalidDicomError``) or ``internal error``.
    """
    cls = type(exc)
    module = (getattr(cls, "__module__", None) or "").split(".")[0]
    name = getattr(cls, "__name__", "")
    if module in KNOWN_MODULES and name.isidentifier() and name.isascii():
        return name
    return INTERNAL_ERROR


def os_error_phrase(exc: OSError) -> str:
    """The fixed phrase of an operating-system error (``No space left on device``).

    Only a builtin ``OSError`` (or one of its builtin subclasses) with a known errno is
    read as such: ``ssl.SSLError``, ``socket.gaierror`` and requests' errors reuse the
    errno field for numbers of their own. The exception's own ``strerror`` and
    ``filename`` are never used.

    Parameters
    ----------
    exc : OSError
        The error.

    Returns
    -------
    str
        ``os.strerror`` of its errno (the C library's table), else its class name.
    """
    number = exc.errno
    if (type(exc).__module__ == "builtins" and isinstance(number, int)
            and number in errno.errorcode):
        return os.strerror(number)
    return exception_class(exc)


def tag_label(tag: int) -> str:
    """A tag as a reason may name it: ``(gggg,eeee)`` when the standard defines it, else
    only whether it is private.

    A tag in a damaged file is often four bytes of a value read as a tag (``(0004,4331)``
    is ``"1C"`` of a Patient ID): the digits of a tag the standard does not define are
    not given.

    Parameters
    ----------
    tag : int
        The tag as an integer.

    Returns
    -------
    str
        ``(0010,0010)``, ``(private tag)`` or ``(unknown tag)``.
    """
    from anonymizer.tags import dictionary_vr, format_tag

    if dictionary_vr(tag) is not None:
        return format_tag(tag)
    return "(private tag)" if tag >> 16 & 1 else "(unknown tag)"


def our_message(exc: BaseException) -> str:
    """The first line of a message this project wrote (see the module docstring)."""
    lines = str(exc).splitlines()
    return lines[0][:300] if lines and lines[0] else exception_class(exc)


def is_ours(exc: BaseException) -> bool:
    """Whether ``exc``'s message was written by us from the allowed parts."""
    from anonymizer.errors import AnonymizerError
    from anonymizer.io.reader import NotDicomError

    return isinstance(exc, AnonymizerError | NotDicomError)


def describe(exc: BaseException) -> str:
    """What failed, without the stage: our message, an errno phrase or a class name."""
    if is_ours(exc):
        return our_message(exc)
    if isinstance(exc, OSError):
        return os_error_phrase(exc)
    return exception_class(exc)


def safe_reason(stage: str, exc: BaseException) -> str:
    """A one-line failure reason from the allowed vocabulary: ``stage: what failed``.

    Parameters
    ----------
    stage : str
        One of :data:`STAGES` (``read``, ``de-identify``, ``write``, ...).
    exc : BaseException
        What was raised.

    Returns
    -------
    str
        e.g. ``read: truncated: element (0008,1070) is cut short``,
        ``write: No space left on device``, ``de-identify: KeyError``.
    """
    return f"{stage}: {describe(exc)}"
