"""Throughput and memory benchmark of ``anonymizer run`` against ``cp -r`` and plain pydicom.

``python -m bench.run`` (``make bench``) builds a cached synthetic PACS-export corpus
(:mod:`bench.corpus`) and measures every command in a fresh process (:mod:`bench.measure`);
see ``bench/README.md``.
"""
