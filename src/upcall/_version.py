# SPDX-License-Identifier: LGPL-2.1-or-later
"""The one place upcall's version is written.

pyproject.toml reads it (setuptools dynamic version), ``upcall.__version__``
and ``upcall --version`` print it; the kernel module's MODULE_VERSION is to
follow it (read it from here, e.g. with
``sed -n 's/^__version__ = "\\(.*\\)"/\\1/p' src/upcall/_version.py``).
"""

__version__ = "0.2.0"
