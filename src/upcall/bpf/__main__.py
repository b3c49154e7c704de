# SPDX-License-Identifier: LGPL-2.1-or-later
"""``python -m upcall.bpf watch|doctor``: the main command line, which has them."""

from __future__ import annotations

import sys

from upcall._cli import main

sys.exit(main())
