# The upcall-dkms Debian package (packaging/, kmod/dkms.conf), included from
# the top Makefile.
#   make dkms-deb    build/dkms/upcall-dkms_<version>_all.deb
#   make test-dkms   install it here, check DKMS built the module for every
#                    kernel with headers, modprobe it in a 6.1 guest with the
#                    client modules of examples/client-module/, then in
#                    another with the library pip-installed from the wheel
#                    (no checkout), remove it (root; tests/host/test_dkms.py,
#                    which a bare pytest tests/host skips unless CI=true)
#
# The version is written once, in src/upcall/_version.py: the Debian version
# is the same with a PEP 440 pre-release or dev part sorted before the
# release (0.2.0rc1 -> 0.2.0~rc1), DKMS's PACKAGE_VERSION follows it
# (dh_dkms -V) and the source tree's VERSION file carries it to the
# module's MODULE_VERSION (kmod/Kbuild).

DKMS_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' src/upcall/_version.py)
DKMS_DEB_VERSION := $(shell echo '$(DKMS_VERSION)' | sed -E 's/\.?(a|b|rc|dev)([0-9]*)$$/~\1\2/')
DKMS_DIR := build/dkms
DKMS_TREE := $(DKMS_DIR)/upcall-dkms-$(DKMS_DEB_VERSION)
DKMS_DEB := $(DKMS_DIR)/upcall-dkms_$(DKMS_DEB_VERSION)_all.deb

# The module's sources as the package ships them: no build products.
DKMS_KMOD_FILES := kmod/Kbuild kmod/Makefile kmod/dkms.conf \
	$(filter-out %.mod.c,$(wildcard kmod/*.c kmod/*.h kmod/include/linux/*.h \
	kmod/include/uapi/linux/*.h kmod/samples/Kbuild kmod/samples/*.c))
DKMS_PACKAGING_FILES := $(shell find packaging -type f 2>/dev/null)
DKMS_CLIENT_FILES := $(shell find examples/client-module -type f \
	\( -name '*.c' -o -name Makefile -o -name '*.md' \) 2>/dev/null)

$(DKMS_DEB): $(STAMP)/apt src/upcall/_version.py mk/dkms.mk \
		$(DKMS_KMOD_FILES) $(DKMS_PACKAGING_FILES) $(DKMS_CLIENT_FILES)
	@test -n "$(DKMS_VERSION)" || { echo "no version in src/upcall/_version.py"; exit 1; }
	rm -rf $(DKMS_DIR)
	mkdir -p $(DKMS_TREE)
	tar -cf - $(DKMS_KMOD_FILES) $(DKMS_PACKAGING_FILES) $(DKMS_CLIENT_FILES) | \
		tar -xf - -C $(DKMS_TREE)
	cp -r packaging/debian $(DKMS_TREE)/debian
	echo '$(DKMS_VERSION)' > $(DKMS_TREE)/kmod/VERSION
	printf '%s\n' \
		'upcall-dkms ($(DKMS_DEB_VERSION)) unstable; urgency=medium' '' \
		'  * upcall $(DKMS_VERSION) (see CHANGELOG.md).' '' \
		" -- The upcall developers <upcall@localhost>  $$(date -R -d @$$(git log -1 --format=%ct 2>/dev/null || date +%s))" \
		> $(DKMS_TREE)/debian/changelog
	cd $(DKMS_TREE) && dpkg-buildpackage -b -us -uc -rfakeroot >../build.log 2>&1 || \
		{ tail -40 ../build.log; exit 1; }
	@echo "built $@"

dkms-deb: $(DKMS_DEB)

test-dkms: deps $(DKMS_DEB)
	UPCALL_TEST_DKMS=1 $(PY) -m pytest -q -p no:cacheprovider tests/host/test_dkms.py

.PHONY: dkms-deb test-dkms
