# upcall: the two commands are `make demo` and `make test`; both install
# what they need (Debian packages as root, Python packages in .venv) and can
# be run again at no cost.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UPCALL := $(PY) -m upcall.vm
SHARED_KERNELS ?= $(firstword $(wildcard ../shared/kernels /work/shared/kernels))
APT_PACKAGES := qemu-system-x86 linux-image-amd64 linux-headers-amd64 \
	busybox-static kmod sparse gcc make binutils
STAMP := build/.stamp

help:
	@echo "make demo    build the module, boot a kernel, show kernel events arriving in Python"
	@echo "make test    host tests, then the kernel suite on the stock and the debug kernel"
	@echo "make check   W=1 build, sparse, checkpatch --strict, ruff, mypy --strict"
	@echo "make soak    10,000,000 events through every transport at once (stock kernel)"
	@echo "make soak-debug   the same soak, smaller, on the debug kernel"
	@echo "make deps    install what the above need (run by them)"

# --- installation ---------------------------------------------------------

$(STAMP)/apt: Makefile
	@mkdir -p $(@D)
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi
	@touch $@

# The debug kernel (KASAN, lockdep, kmemleak...) from ../shared/kernels.
$(STAMP)/debug-kernel: $(STAMP)/apt
	@mkdir -p $(@D)
	@if [ -z "$(SHARED_KERNELS)" ]; then \
		echo "debug kernel: ../shared/kernels not found; its test pass will be skipped"; \
	elif ls /boot/vmlinuz-*upcall-debug >/dev/null 2>&1; then :; \
	else \
		echo "installing the debug kernel from $(SHARED_KERNELS)"; \
		(cd $(SHARED_KERNELS) && sha256sum -c --quiet SHA256SUMS) && \
		$(SUDO) dpkg -i $(SHARED_KERNELS)/linux-image-*.deb $(SHARED_KERNELS)/linux-headers-*.deb; \
	fi
	@touch $@

$(STAMP)/venv: pyproject.toml
	@mkdir -p $(@D)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

deps: $(STAMP)/apt $(STAMP)/debug-kernel $(STAMP)/venv bpf-deps

include mk/bpf.mk
include mk/bench.mk
include mk/kselftest.mk

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# --- the module -----------------------------------------------------------

KVER ?= $(shell ls /boot/vmlinuz-* 2>/dev/null | grep -v upcall-debug | sed 's|/boot/vmlinuz-||' | sort -V | tail -1)
KDIR ?= /usr/src/linux-headers-$(KVER)

module: $(STAMP)/apt
	$(MAKE) -C kmod KDIR=$(KDIR) W=1

# The ioctl fuzzer, run in the guest by tests/kernel/test_fuzz.py.
FUZZER := build/fuzz/upcall-fuzz

$(FUZZER): tools/fuzz/upcall_fuzz.c kmod/include/uapi/linux/upcall.h
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -I kmod/include/uapi $< -o $@

fuzz-build: $(FUZZER)

# --- the two commands -----------------------------------------------------

demo: deps
	$(UPCALL) --edu -- $(PY) examples/demo.py

test: deps bpf-build
	$(PY) -m pytest tests/host -q
	$(MAKE) test-kernel
	$(MAKE) test-kernel-debug

KERNEL_SUITE := $(PY) -m pytest tests/kernel -q -p no:cacheprovider -o console_output_style=classic

# The suite boots with QEMU's edu device, so the hardware interrupt tests run.
test-kernel: deps fuzz-build bench-build bpf-build
	$(UPCALL) --edu -- $(KERNEL_SUITE)

test-kernel-debug: deps fuzz-build bench-build bpf-build
	@if ls /boot/vmlinuz-*upcall-debug >/dev/null 2>&1; then \
		$(UPCALL) --debug-kernel --edu --timeout 3300 -- $(KERNEL_SUITE); \
	else \
		echo "SKIPPED: the kernel suite on the debug kernel: no debug kernel installed"; \
		echo "  (dpkg -i ../shared/kernels/*.deb, see ../shared/kernels/README.md)"; \
	fi

# The volume soak (RELIABILITY.md): tests/kernel/test_soak.py at full size,
# then the netlink fuzzer (SOAK_NLFUZZ messages as root, a fifth as nobody).
SOAK_EVENTS ?= 10000000
SOAK_DEBUG_EVENTS ?= 200000
SOAK_NLFUZZ ?= 200000
SOAK_PYTEST := $(PY) -m pytest -q -s -p no:cacheprovider --durations=0 \
	tests/kernel/test_soak.py tests/kernel/test_netlink_fuzz.py

soak: deps fuzz-build bench-build
	$(UPCALL) --edu --timeout 7200 -- env UPCALL_SOAK_EVENTS=$(SOAK_EVENTS) \
		UPCALL_NLFUZZ_MESSAGES=$(SOAK_NLFUZZ) $(SOAK_PYTEST)

soak-debug: deps fuzz-build bench-build
	$(UPCALL) --debug-kernel --edu --timeout 7200 -- env UPCALL_SOAK_EVENTS=$(SOAK_DEBUG_EVENTS) \
		UPCALL_NLFUZZ_MESSAGES=$$(($(SOAK_NLFUZZ) / 10)) $(SOAK_PYTEST)

# --- static checks --------------------------------------------------------

CHECKPATCH := build/tools/linux-source-6.1/scripts/checkpatch.pl

$(CHECKPATCH):
	@dpkg-query -W linux-source-6.1 >/dev/null 2>&1 || \
		(DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q linux-source-6.1)
	mkdir -p build/tools
	tar -xf /usr/src/linux-source-6.1.tar.xz -C build/tools \
		linux-source-6.1/scripts/checkpatch.pl \
		linux-source-6.1/scripts/spelling.txt \
		linux-source-6.1/scripts/const_structs.checkpatch
	touch $@

check: deps $(CHECKPATCH)
	@set -o pipefail; $(MAKE) -C kmod KDIR=$(KDIR) clean >/dev/null
	@set -o pipefail; out=$$($(MAKE) -C kmod KDIR=$(KDIR) w1 2>&1) || { echo "$$out"; exit 1; }; \
		if grep -q "warning:" <<<"$$out"; then echo "$$out"; echo "W=1 warnings"; exit 1; fi; \
		echo "W=1: no warnings"
	@$(MAKE) -C kmod KDIR=$(KDIR) clean >/dev/null
	@out=$$($(MAKE) -C kmod KDIR=$(KDIR) sparse 2>&1) || { echo "$$out"; exit 1; }; \
		if grep -E "warning:|error:" <<<"$$out"; then echo "sparse complaints"; exit 1; fi; \
		echo "sparse: clean"
	@$(MAKE) -C kmod KDIR=$(KDIR) clean >/dev/null
	$(MAKE) -C kmod checkpatch CHECKPATCH=$(CURDIR)/$(CHECKPATCH)
	$(VENV)/bin/ruff check src tests examples bench
	$(VENV)/bin/ruff format --check src tests examples bench
	$(VENV)/bin/mypy

clean:
	-$(MAKE) -C kmod KDIR=$(KDIR) clean
	rm -rf build

.PHONY: help deps module fuzz-build demo test test-kernel test-kernel-debug soak soak-debug \
	check clean
