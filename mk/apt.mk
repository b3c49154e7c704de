# One way to install a Debian package a build step needs, for the Makefile
# and for the mk/*.mk files that are also usable alone (each includes this).
ifndef APT_MK
APT_MK := 1
APT_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# $(call apt_ensure,PACKAGE): a shell command that installs PACKAGE unless it
# is installed. dpkg-query -W alone also succeeds for a package that was
# removed (its files gone, its configuration kept): ask for the installed
# state.
apt_ensure = dpkg-query -W -f='$${Status}\n' $(1) 2>/dev/null | grep -q "install ok installed" || \
	(DEBIAN_FRONTEND=noninteractive $(APT_SUDO) apt-get install -y -q $(1))
endif
