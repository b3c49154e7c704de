"""Facts about the guest kernel that the tests scale by."""

from __future__ import annotations

import os

#: The debug kernel (KASAN, lockdep, ...) runs 5-10x slower: tests use
#: smaller counts there. The harness exports UPCALL_DEBUG_KERNEL; the
#: kernel's name says it too, for a suite started by hand in a guest.
DEBUG_KERNEL = os.environ.get("UPCALL_DEBUG_KERNEL") == "1" or "debug" in os.uname().release
