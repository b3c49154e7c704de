# SPDX-License-Identifier: LGPL-2.1-or-later
"""``python -m upcall.bpf watch|doctor|bench-bpf`` without the main CLI."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
