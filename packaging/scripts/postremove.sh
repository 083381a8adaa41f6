#!/bin/sh
# Package maintainer script, after the files are removed (deb `postrm
# remove|purge|upgrade ...`, rpm %postun with the number of versions left).
#
# The state (/var/lib/shoes-scaleset, kept by systemd in
# /var/lib/private/shoes-scaleset) is never removed, not even on purge: it
# holds the runner -> instance map, without which the instances of the last
# runners cannot be found and deleted. Remove it by hand once they are gone.
set -e

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
