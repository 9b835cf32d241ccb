"""``anonymizer review``: one self-contained HTML page a curator reads before signing off.

It shows what stayed in a release (OUT of ``anonymizer run``): the runs of its audit log,
every kept text value (public and private, by attribute, most frequent first, those that
look like identifiers marked), who and what is in it, the study dates per patient, a few
thumbnails per series with the images the pixel stage flagged first, and the findings of
``anonymizer verify`` when given. Everything on the page comes from OUT and its audit
log, never from the input.

Needs the ``review`` extra (Jinja2, Pillow and the ``pixels`` decoders).
"""

from __future__ import annotations

from anonymizer.review.page import ReviewFinding, ReviewOptions, ReviewResult, write_review

__all__ = ["ReviewFinding", "ReviewOptions", "ReviewResult", "write_review"]
