# SPDX-License-Identifier: LGPL-2.1-or-later
"""Exceptions raised by upcall."""

from __future__ import annotations

import errno


class UpcallError(Exception):
    """Base class of every error upcall raises on purpose."""


class ClosedError(UpcallError):
    """The device or subscription was used after it was closed."""


class DeviceError(UpcallError, OSError):
    """/dev/upcall could not be opened or refused a request.

    ``errno`` is the system error number, as for :class:`OSError`.
    """


class ModuleVersionError(DeviceError):
    """The loaded module speaks another ABI version than this library.

    The message names both versions; ``errno`` is EPROTO.
    """

    def __init__(self, message: str) -> None:
        super().__init__(errno.EPROTO, message)

    def __str__(self) -> str:
        return str(self.strerror)


class SignalSetupError(UpcallError):
    """The signal cannot be received reliably in this process.

    Raised, for example, when another thread already runs with the signal
    unblocked, so the kernel may hand it to that thread instead of the
    signalfd.
    """


class WrongThreadError(SignalSetupError):
    """The call was made from a thread that cannot do it.

    A signal queued on one thread can only be read by that thread: a
    subscription's events are read in the thread that subscribed (the main
    thread for a process subscription), and callbacks are set up from the
    main thread.
    """
