# Module transports benchmark (issue 3): the C receiver and emitter that
# `python -m upcall_dev bench` runs in the guest beside the Python receiver.
# Included by the top-level Makefile; also usable alone:
#   make -f mk/bench.mk bench-build
# Built on the host: the guest shares the host's filesystem and C library.
# Output goes to build/bench/ (git-ignored).

BENCH_SRC_DIR ?= bench
BENCH_OUT     ?= build/bench
BENCH_CC      ?= cc
BENCH_CFLAGS  ?= -O2 -Wall -Wextra -Werror
BENCH_BIN     := $(BENCH_OUT)/upcall-bench

.PHONY: bench-build bench-clean

bench-build: $(BENCH_BIN)

$(BENCH_BIN): $(BENCH_SRC_DIR)/receiver.c $(BENCH_SRC_DIR)/upcall_genl.h kmod/include/uapi/linux/upcall.h
	@mkdir -p $(@D)
	$(BENCH_CC) $(BENCH_CFLAGS) -pthread -I kmod/include/uapi $< -o $@

bench-clean:
	rm -f $(BENCH_BIN)
