# The kernel's own YNL tools (tools/net/ynl: the Python library, cli.py and
# ynl-gen-c.py) and the genetlink-c schema they check a spec against, taken
# from Debian's linux-source-6.12 (as kselftest.mk takes its harness from
# linux-source-6.1) and never committed. tests/host/test_ynl_spec.py checks
# Documentation/netlink/specs/upcall.yaml with them; tests/kernel/test_ynl.py
# drives the family from that spec in the guest.
# Included by the top-level Makefile; also usable alone:
#   make -f mk/ynl.mk ynl-build
# Output goes to build/ynl/ (git-ignored), laid out as in the kernel tree.

include $(dir $(lastword $(MAKEFILE_LIST)))apt.mk

YNL_TARBALL := /usr/src/linux-source-6.12.tar.xz
YNL_TAR_TOP := linux-source-6.12
YNL_OUT     := build/ynl
YNL_FILES   := tools/net/ynl/cli.py tools/net/ynl/ynl-gen-c.py \
	tools/net/ynl/lib/__init__.py tools/net/ynl/lib/nlspec.py tools/net/ynl/lib/ynl.py \
	Documentation/netlink/genetlink-c.yaml scripts/kernel-doc
YNL_STAMP   := $(YNL_OUT)/.extracted

.PHONY: ynl-build ynl-clean

ynl-build: $(YNL_STAMP)

$(YNL_STAMP): mk/ynl.mk
	@$(call apt_ensure,linux-source-6.12)
	rm -rf $(YNL_OUT)
	mkdir -p $(YNL_OUT)
	tar -xf $(YNL_TARBALL) -C $(YNL_OUT) --strip-components=1 \
		$(addprefix $(YNL_TAR_TOP)/,$(YNL_FILES))
	touch $@

ynl-clean:
	rm -rf $(YNL_OUT)
