# upcall: the two commands are `make demo` and `make test`; both install
# what they need (Debian packages as root, Python packages in .venv) and can
# be run again at no cost.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UPCALL := $(PY) -m upcall_dev vm
SHARED_KERNELS ?= $(firstword $(wildcard ../shared/kernels /work/shared/kernels))
# The kernels upcall is tested on (flavours 6.1, 6.1-rt, 6.12, 6.12-rt in
# tools/upcall_dev/vm.py), all from the suites a fresh Debian 12 machine has.
KERNEL_PACKAGES := linux-image-amd64 linux-headers-amd64 \
	linux-image-rt-amd64 linux-headers-rt-amd64 \
	linux-image-6.12-amd64 linux-headers-6.12-amd64 \
	linux-image-6.12-rt-amd64 linux-headers-6.12-rt-amd64
APT_PACKAGES := qemu-system-x86 $(KERNEL_PACKAGES) \
	busybox-static kmod sparse gcc make binutils python3-venv python3-dev \
	dkms dh-dkms debhelper dpkg-dev fakeroot linux-source-6.1 linux-source-6.12 gcc-multilib strace
STAMP := build/.stamp

help:
	@echo "make demo    build the module, boot a kernel, show kernel events arriving in Python"
	@echo "make test    host tests, then the kernel suite on the stock and the debug kernel"
	@echo "make check   W=1 build, sparse, checkpatch --strict, ruff, mypy --strict"
	@echo "make soak    10,000,000 events through every transport at once (stock kernel)"
	@echo "make soak-debug   the same soak, smaller, on the debug kernel"
	@echo "make deps    install what the above need (run by them)"
	@echo "make test-all     the whole kernel suite on every kernel (make test runs a core suite on some)"

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

# The library, and the checkout's tooling (tools/upcall_dev: the kernel
# harness and the benchmarks, a project of its own so that the wheel never
# holds it), both editable: python -m upcall_dev finds the checkout it is in.
$(STAMP)/venv: pyproject.toml tools/pyproject.toml setup.py src/upcall/_core.c $(STAMP)/apt
	@mkdir -p $(@D)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -e tools
	@touch $@

deps: $(STAMP)/apt $(STAMP)/debug-kernel $(STAMP)/venv bpf-deps

include mk/apt.mk
include mk/bpf.mk
include mk/bench.mk
include mk/docs.mk
include mk/dkms.mk
include mk/kselftest.mk
include mk/ynl.mk

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# --- the module -----------------------------------------------------------

# The kernel the static checks build against: the default flavour, named by
# its Debian meta-package (installing another kernel does not change it).
# Expanded when a recipe runs, after deps.
KFLAVOUR ?= 6.1
KDIR ?= $(shell $(UPCALL) --kernel $(KFLAVOUR) --print-headers)

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
	$(UPCALL) --kernel 6.1 --edu -- $(PY) examples/demo.py

# The host pass includes the wheel and the DKMS package tests
# (tests/host/test_wheel.py, test_dkms.py): the wheel pip-installed in a
# fresh venv on this host; upcall-dkms installed here, built for every
# kernel, loaded in a guest, then with the wheel's library in another (a
# user's whole path, no checkout), and removed.
test: deps bpf-build ynl-build env-check
	UPCALL_TEST_DKMS=1 $(PY) -m pytest tests/host -q
	$(MAKE) test-kernel
	$(MAKE) test-kernel-matrix
	$(MAKE) test-kernel-debug

# Fails when a tool the tests need is found only outside what make deps
# installs (a hand-installed tool, a PATH entry of the caller's shell).
env-check: deps
	@tools/check-env

KERNEL_PYTEST := $(PY) -m pytest -q -p no:cacheprovider -o console_output_style=classic
KERNEL_SUITE := $(KERNEL_PYTEST) tests/kernel
KERNEL_BUILDS := fuzz-build bench-build bpf-build kselftest-build ynl-build

# The suite boots with QEMU's edu device, so the hardware interrupt tests run.
test-kernel: deps $(KERNEL_BUILDS)
	$(UPCALL) --kernel 6.1 --edu -- $(KERNEL_SUITE)

# The other kernels: a core suite each, in its own boot, at reduced counts
# (UPCALL_CORE=1): every transport, accounting, the edu interrupt, churn,
# faults, isolation, source filters, the BPF-in-guest tests, and the soak:
# hard-IRQ emitters (edu, hrtimer) beside ioctl emitters with exact
# accounting, which matters most on PREEMPT_RT. `make test-all` runs the
# whole suite on each instead.
MATRIX_KERNELS := 6.1-rt 6.12 6.12-rt
CORE_TESTS := $(addprefix tests/kernel/,test_signal.py test_transports.py test_edu.py \
	test_churn.py test_faults.py test_isolation.py test_bpf_guest.py test_errors.py \
	test_sample.py test_timer.py test_sources.py test_soak.py test_kselftest.py \
	test_upstream.py test_compat32.py test_ynl.py test_unload.py test_irq_bound.py \
	test_contract_module.py test_async.py)

# Every kernel runs, whatever the one before it gave; any failure fails.
test-kernel-matrix: deps $(KERNEL_BUILDS)
	@failed=""; for k in $(MATRIX_KERNELS); do \
		echo "== kernel $$k: core suite"; \
		$(UPCALL) --kernel $$k --edu -- env UPCALL_CORE=1 $(KERNEL_PYTEST) $(CORE_TESTS) \
			|| failed="$$failed $$k"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED: the core suite on:$$failed"; exit 1; fi

test-all: deps $(KERNEL_BUILDS)
	@set -e; for k in 6.1 $(MATRIX_KERNELS); do \
		echo "== kernel $$k: whole suite"; \
		$(UPCALL) --kernel $$k --edu -- $(KERNEL_SUITE); \
	done
	$(MAKE) test-kernel-debug

# In CI (CI=true) a kernel pass that cannot run fails; elsewhere it says why.
test-kernel-debug: deps $(KERNEL_BUILDS)
	@if ls /boot/vmlinuz-*upcall-debug >/dev/null 2>&1; then \
		$(UPCALL) --debug-kernel --edu --timeout 3300 -- $(KERNEL_SUITE); \
	elif [ "$(CI)" = true ]; then \
		echo "FAILED: the kernel suite on the debug kernel: no debug kernel installed"; \
		echo "  (make deps installs it from ../shared/kernels, which CI has)"; exit 1; \
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
	$(UPCALL) --kernel 6.1 --edu --timeout 7200 -- env UPCALL_SOAK_EVENTS=$(SOAK_EVENTS) \
		UPCALL_NLFUZZ_MESSAGES=$(SOAK_NLFUZZ) $(SOAK_PYTEST)

soak-debug: deps fuzz-build bench-build
	$(UPCALL) --debug-kernel --edu --timeout 7200 -- env UPCALL_SOAK_EVENTS=$(SOAK_DEBUG_EVENTS) \
		UPCALL_NLFUZZ_MESSAGES=$$(($(SOAK_NLFUZZ) / 10)) $(SOAK_PYTEST)

# --- static checks --------------------------------------------------------

CHECKPATCH := build/tools/linux-source-6.1/scripts/checkpatch.pl

$(CHECKPATCH):
	@$(call apt_ensure,linux-source-6.1)
	mkdir -p build/tools
	tar -xf /usr/src/linux-source-6.1.tar.xz -C build/tools \
		linux-source-6.1/scripts/checkpatch.pl \
		linux-source-6.1/scripts/spelling.txt \
		linux-source-6.1/scripts/const_structs.checkpatch
	touch $@

# W=1 and sparse on every kernel the tests boot: each must build clean.
CHECK_KERNELS := 6.1 $(MATRIX_KERNELS)

check: deps $(CHECKPATCH)
	@set -o pipefail; for k in $(CHECK_KERNELS); do \
		kdir=$$($(UPCALL) --kernel $$k --print-headers) || exit 1; \
		$(MAKE) -C kmod KDIR=$$kdir clean >/dev/null; \
		out=$$($(MAKE) -C kmod KDIR=$$kdir w1 2>&1) || { echo "$$out"; exit 1; }; \
		if grep -q "warning:" <<<"$$out"; then echo "$$out"; echo "$$k: W=1 warnings"; exit 1; fi; \
		$(MAKE) -C kmod KDIR=$$kdir clean >/dev/null; \
		out=$$($(MAKE) -C kmod KDIR=$$kdir sparse 2>&1) || { echo "$$out"; exit 1; }; \
		if grep -E "warning:|error:" <<<"$$out"; then echo "$$k: sparse complaints"; exit 1; fi; \
		$(MAKE) -C kmod KDIR=$$kdir clean >/dev/null; \
		echo "$$k ($$(basename $$kdir)): W=1 no warnings, sparse clean"; \
	done
	$(MAKE) -C kmod checkpatch CHECKPATCH=$(CURDIR)/$(CHECKPATCH)
	$(CC) -fsyntax-only -Wall -Wextra -Werror -std=gnu11 \
		$$($(PY) -c 'import sysconfig; print("-I" + sysconfig.get_paths()["include"])') \
		src/upcall/_core.c
	$(VENV)/bin/ruff check src tools tests examples bench
	$(VENV)/bin/ruff format --check src tools tests examples bench
	$(VENV)/bin/mypy
	$(MAKE) docs

clean:
	-$(MAKE) -C kmod KDIR=$(KDIR) clean
	rm -rf build $(BPF_PACKAGED)

.PHONY: help deps module fuzz-build demo test env-check test-kernel test-kernel-matrix \
	test-all test-kernel-debug soak soak-debug check clean
