# Kernel-native ABI tests (tools/testing/selftests/upcall/), built on the
# kernel's own kselftest harness, which is taken from Debian's
# linux-source-6.1 (as checkpatch.pl is) and never committed.
# tests/kernel/test_kselftest.py runs the binary in the guest.
# Included by the top-level Makefile; also usable alone:
#   make -f mk/kselftest.mk kselftest-build
# Output goes to build/kselftest/ (git-ignored).

include $(dir $(lastword $(MAKEFILE_LIST)))apt.mk

KSFT_TARBALL := /usr/src/linux-source-6.1.tar.xz
KSFT_TAR_DIR := linux-source-6.1/tools/testing/selftests
KSFT_OUT     := build/kselftest
KSFT_INCLUDE := $(KSFT_OUT)/include
KSFT_HARNESS := $(KSFT_INCLUDE)/kselftest_harness.h
KSFT_BIN     := $(KSFT_OUT)/upcall_abi_test

.PHONY: kselftest-build kselftest-clean

kselftest-build: $(KSFT_BIN)

$(KSFT_HARNESS):
	@$(call apt_ensure,linux-source-6.1)
	mkdir -p $(KSFT_INCLUDE)
	tar -xf $(KSFT_TARBALL) -C $(KSFT_INCLUDE) --strip-components=4 \
		$(KSFT_TAR_DIR)/kselftest_harness.h $(KSFT_TAR_DIR)/kselftest.h
	touch $@

$(KSFT_BIN): tools/testing/selftests/upcall/upcall_abi_test.c \
		kmod/include/uapi/linux/upcall.h $(KSFT_HARNESS)
	$(MAKE) -C tools/testing/selftests/upcall OUTPUT=$(CURDIR)/$(KSFT_OUT) \
		KSFT_INCLUDE=$(CURDIR)/$(KSFT_INCLUDE) \
		UAPI_INCLUDE=$(CURDIR)/kmod/include/uapi

kselftest-clean:
	rm -rf $(KSFT_OUT)
