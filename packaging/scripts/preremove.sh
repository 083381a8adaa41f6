#!/bin/sh
# Package maintainer script, before the files are removed. deb calls it as
# `prerm remove` (or `upgrade`, ...), rpm as %preun with the number of
# versions left after the operation (0: erase, 1: upgrade). Only a real
# removal stops and disables the service; an upgrade restarts it in
# postinstall.
set -e

case "$1" in
	remove | 0) ;;
	*) exit 0 ;;
esac

if command -v systemctl >/dev/null 2>&1; then
	if [ -d /run/systemd/system ]; then
		systemctl stop shoes-scaleset.service || true
	fi
	# Works without a running systemd: it removes the WantedBy= symlink.
	systemctl --no-reload disable shoes-scaleset.service >/dev/null 2>&1 || true
fi
exit 0
