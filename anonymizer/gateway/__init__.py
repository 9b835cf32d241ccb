"""``anonymizer listen``: a de-identifying DICOM gateway (C-STORE SCP -> spool -> DEST)."""
