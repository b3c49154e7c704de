"""``python -m upcall``: the upcall command."""

from upcall.cli import main

raise SystemExit(main())
