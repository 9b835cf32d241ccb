"""Network sources and destinations: DICOMweb (QIDO-RS, WADO-RS, STOW-RS) and DIMSE
(C-FIND, C-GET, C-MOVE, C-STORE).

A source lists instances and fetches each one to a spool file; a destination stores one
finished file. The batch runner feeds the spooled files through the same reader -> engine
-> writer path as a folder run, so the outputs are the same bytes.
"""

from __future__ import annotations

from anonymizer.net.urls import Endpoint, is_network_url, parse_endpoint

__all__ = ["Endpoint", "is_network_url", "parse_endpoint"]
