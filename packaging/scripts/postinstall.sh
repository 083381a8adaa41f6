#!/bin/sh
# Package maintainer script, after the files are installed. One script for
# both formats: deb calls it as `postinst configure [<old version>]`, rpm as
# %post with the number of installed versions (1: install, 2: upgrade).
#
# The service is neither enabled nor started on install: it needs
# /etc/shoes-scaleset/shoes-scaleset.env filled in first. On upgrade, a
# running service is restarted on the new binary (a restart is a clean stop:
# in-flight plugin calls finish, sessions are deleted; runners and instances
# are kept).
set -e

upgrade=no
case "$1" in
	configure) [ -n "${2:-}" ] && upgrade=yes ;;
	[0-9]*) [ "$1" -ge 2 ] && upgrade=yes ;;
esac

# No running systemd (a container, a chroot, a CI machine): nothing to tell.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	if [ "$upgrade" = yes ]; then
		systemctl try-restart shoes-scaleset.service || true
	fi
fi
exit 0
