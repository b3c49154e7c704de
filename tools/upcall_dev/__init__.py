# SPDX-License-Identifier: LGPL-2.1-or-later
"""upcall's developer tooling: the kernel harness and the benchmarks.

Not part of the ``upcall`` package or its wheel: it lives in the source
checkout (``tools/upcall_dev/``), needs the checkout (``kmod/``, ``bench/``,
``build/``) and is installed into the checkout's ``.venv`` by ``make deps``
(``pip install -e tools``). Run it as ``python -m upcall_dev COMMAND``:

- ``vm``: build the module, boot an installed kernel under QEMU, run a
  command inside (:mod:`upcall_dev.vm`);
- ``bench``: the module's transports, Python against C, in a guest
  (:mod:`upcall_dev.bench`);
- ``bench-bpf``: the BPF path's signal and ring buffer, Python against C,
  on this host (:mod:`upcall_dev.bench_bpf`).
"""

from __future__ import annotations

from pathlib import Path

#: The source checkout this package belongs to (``tools/upcall_dev/`` in it).
REPO = Path(__file__).resolve().parents[2]
