# SPDX-License-Identifier: LGPL-2.1-or-later
"""Where the compiled BPF object is: the one file every BPF subscription loads."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from .errors import BpfError

__all__ = ["OBJ_ENV", "OBJ_NAME", "object_path"]

#: The environment variable naming the BPF object to load instead of the packaged one.
OBJ_ENV = "UPCALL_BPF_OBJ"
OBJ_NAME = "upcall.bpf.o"


def object_path() -> Path:
    """The compiled BPF object this process loads.

    In order: ``$UPCALL_BPF_OBJ``; the object the wheel carries beside this
    module (``upcall/bpf/upcall.bpf.o``, compiled when the wheel was built);
    in a source checkout, ``build/bpf/upcall.bpf.o`` from ``make bpf-build``.
    BpfError, saying how to get one, when there is none.
    """
    env = os.environ.get(OBJ_ENV)
    if env:
        if not Path(env).is_file():
            raise BpfError(f"{OBJ_ENV}={env}: no such file (unset it to use the packaged object)")
        return Path(env)
    packaged = importlib.resources.files("upcall.bpf") / OBJ_NAME
    if packaged.is_file():
        return Path(str(packaged))
    for parent in Path(__file__).resolve().parents:
        cand = parent / "build" / "bpf" / OBJ_NAME
        if cand.is_file():
            return cand
    raise BpfError(
        f"BPF object {OBJ_NAME} not found: not in the package (a wheel carries it), nor "
        f"build/bpf/ of a source checkout: run `make bpf-build` in the checkout, reinstall "
        f"the wheel, or set {OBJ_ENV}=/path/to/{OBJ_NAME}"
    )
