# SPDX-License-Identifier: LGPL-2.1-or-later
"""``python -m upcall``: the upcall command."""

from upcall._cli import main

raise SystemExit(main())
