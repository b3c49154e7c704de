# BPF path (issue 5): build the BPF object and the C benchmark consumer.
# Included by the top-level Makefile; also usable alone:
#   make -f mk/bpf.mk bpf-deps bpf-build
# Outputs go to build/bpf/ (git-ignored). vmlinux.h is generated from this
# machine's kernel BTF at build time and never committed.

BPF_SRC_DIR  ?= bpf
BPF_OUT      ?= build/bpf
BPF_CLANG    ?= clang
BPF_CC       ?= cc
BPF_BPFTOOL  ?= $(shell command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)
BPF_BTF      ?= /sys/kernel/btf/vmlinux
BPF_ARCH     := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BPF_CFLAGS   ?= -g -O2 -Wall -Werror
BPF_APT_PKGS := clang llvm libbpf-dev bpftool

BPF_OBJ      := $(BPF_OUT)/upcall.bpf.o
BPF_CONSUMER := $(BPF_OUT)/upcall-bpf-consumer
BPF_PACKAGED := src/upcall/bpf/upcall.bpf.o
BPF_VMLINUX  := $(BPF_OUT)/vmlinux.h

.PHONY: bpf-deps bpf-build bpf-clean

# Idempotent: installs only when a tool or header is missing.
bpf-deps:
	@if command -v $(BPF_CLANG) >/dev/null && command -v llvm-strip >/dev/null \
	   && { command -v bpftool >/dev/null || test -x /usr/sbin/bpftool; } \
	   && test -f /usr/include/bpf/libbpf.h; then \
		echo "bpf-deps: clang, llvm, libbpf-dev, bpftool present"; \
	else \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(BPF_APT_PKGS); \
	fi

bpf-build: $(BPF_OBJ) $(BPF_CONSUMER) $(BPF_PACKAGED)

# Where the library looks for the object (upcall/bpf/, as in the wheel): an
# editable install from this checkout finds it there through this relative
# link (git-ignored, *.o), and looks nowhere else.
$(BPF_PACKAGED): $(BPF_OBJ)
	ln -sfr $< $@

$(BPF_OUT):
	mkdir -p $@

$(BPF_VMLINUX): | $(BPF_OUT)
	@test -r $(BPF_BTF) || { echo "bpf-build: $(BPF_BTF) missing: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF)"; exit 1; }
	$(BPF_BPFTOOL) btf dump file $(BPF_BTF) format c > $@.tmp && mv $@.tmp $@

$(BPF_OBJ): $(BPF_SRC_DIR)/upcall.bpf.c $(BPF_SRC_DIR)/upcall_bpf.h $(BPF_VMLINUX)
	$(BPF_CLANG) $(BPF_CFLAGS) -target bpf -D__TARGET_ARCH_$(BPF_ARCH) \
		-I$(BPF_OUT) -I$(BPF_SRC_DIR) -c $< -o $@

$(BPF_CONSUMER): $(BPF_SRC_DIR)/consumer.c $(BPF_SRC_DIR)/upcall_bpf.h | $(BPF_OUT)
	$(BPF_CC) -O2 -Wall -Wextra -Werror -I$(BPF_SRC_DIR) $< -o $@ -lbpf -lpthread

bpf-clean:
	rm -rf $(BPF_OUT) $(BPF_PACKAGED)
