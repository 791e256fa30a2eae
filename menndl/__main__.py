"""``python -m menndl``."""

from menndl.cli import main

raise SystemExit(main())
