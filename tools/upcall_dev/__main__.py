# SPDX-License-Identifier: LGPL-2.1-or-later
"""``python -m upcall_dev``: the developer command line."""

from upcall_dev.cli import main

raise SystemExit(main())
