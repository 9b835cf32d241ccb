"""Allow ``python -m anonymizer``."""

from anonymizer.cli import main

raise SystemExit(main())
