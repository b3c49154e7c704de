# SPDX-License-Identifier: LGPL-2.1-or-later
"""Where the compiled BPF object is: the one file every BPF subscription loads."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from ._errors import BpfError

__all__ = ["OBJ_ENV", "OBJ_NAME", "object_path"]

#: The environment variable naming the BPF object to load instead of the packaged one.
OBJ_ENV = "UPCALL_BPF_OBJ"
OBJ_NAME = "upcall.bpf.o"


def object_path() -> Path:
    """The compiled BPF object this process loads.

    In order: ``$UPCALL_BPF_OBJ``; the object beside this module
    (``upcall/bpf/upcall.bpf.o``): the wheel carries it, compiled when the
    wheel was built, and in a source checkout's editable install
    ``make bpf-build`` links it there from ``build/bpf/``. Nothing else is
    searched. BpfError, saying how to get one, when there is none.
    """
    env = os.environ.get(OBJ_ENV)
    if env:
        if not Path(env).is_file():
            raise BpfError(f"{OBJ_ENV}={env}: no such file (unset it to use the packaged object)")
        return Path(env)
    packaged = importlib.resources.files("upcall.bpf") / OBJ_NAME
    if packaged.is_file():
        return Path(str(packaged))
    raise BpfError(
        f"BPF object {OBJ_NAME} not found in the package ({packaged}): reinstall the wheel "
        f"(it carries it), run `make bpf-build` in a source checkout, or set "
        f"{OBJ_ENV}=/path/to/{OBJ_NAME}"
    )
