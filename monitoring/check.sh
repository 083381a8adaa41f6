#!/usr/bin/env bash
# Checks the shipped Prometheus rules: their syntax (promtool check rules)
# and their behaviour (promtool test rules, the cases in alerts_test.yaml).
# The metric names they and the Grafana dashboard use are checked against
# the code by `go test ./internal/metrics -run Monitoring`.
#
# Usage: monitoring/check.sh [--install]
#
# promtool is taken from $PROMTOOL, else from PATH. With --install and no
# promtool, it is extracted from Debian's prometheus package into
# /usr/local/bin (as root), without installing the package (no service,
# no dependencies; a 19 MB download): for a clean CI machine, where the
# Go test of the dashboard's queries (TestMonitoringPromQL) then finds it
# on PATH too.
set -euo pipefail
cd "$(dirname "$0")"

promtool="${PROMTOOL:-$(command -v promtool || true)}"
if [ -z "$promtool" ] && [ "${1:-}" = "--install" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (
    cd "$tmp"
    apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus >/dev/null; }
    dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool
  )
  install -m 0755 "$tmp/usr/bin/promtool" /usr/local/bin/promtool
  promtool=/usr/local/bin/promtool
fi
if [ -z "$promtool" ]; then
  echo "monitoring/check.sh: no promtool: install it (Debian: apt-get install --no-install-recommends prometheus), set PROMTOOL, or pass --install" >&2
  exit 1
fi

"$promtool" --version 2>&1 | head -n 1
"$promtool" check rules alerts.yaml
"$promtool" test rules alerts_test.yaml
