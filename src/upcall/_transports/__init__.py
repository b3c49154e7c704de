# SPDX-License-Identifier: LGPL-2.1-or-later
"""The transports that read the module's queue, and the netlink one.

One module per concern: :mod:`.records` decodes ``struct upcall_event``
records, :mod:`.queue` reads them from the file, :mod:`.fasync` and
:mod:`.eventfd` add the two ways of being told that the queue has some, and
:mod:`.netlink` receives (:mod:`.mmsg`) and parses (:mod:`.nlmsg`) generic
netlink messages. The signal transport lives in :mod:`upcall._subscription`.
"""
