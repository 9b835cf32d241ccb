"""anonymizer: DICOM de-identification batch pipeline.

Profiles (YAML) compile into immutable rule tables (:mod:`anonymizer.profiles`),
the engine (:mod:`anonymizer.engine`) applies them to pydicom datasets, and the
pipeline (:mod:`anonymizer.pipeline`) streams files through reader, engine and
atomic writer while writing a PHI-free audit log.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
