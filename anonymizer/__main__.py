"""Allow ``python -m anonymizer``."""

from anonymizer.cli import console

console()
