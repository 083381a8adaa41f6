#!/usr/bin/env bash
# packaging/check.sh: build the deb, install it, check it, remove it.
#
# Builds the linux/amd64 packages with goreleaser (the .goreleaser.yaml nfpms
# section, so nothing here repeats the package layout), installs the deb with
# dpkg, checks that the binary, the systemd unit, the env and policy examples
# and the shell completions are in place and work, runs systemd-analyze
# verify and security on the installed unit, reinstalls over a local edit of
# the env file (a conffile must survive), then purges the package and checks
# that its files are gone.
#
# Needs root and an amd64 Debian machine without the package installed: CI's
# clean machine. Exits non-zero, naming the failed check, on any failure; the
# package is purged on the way out whatever happens. The deb and rpm stay in
# dist/.
#
#   GORELEASER  the goreleaser command (default: go run of v2.15.1; .ci/run
#               passes the binary it built once and keeps in its cache)
#   MAX_EXPOSURE  highest `systemd-analyze security` exposure accepted (2.0)
set -euo pipefail
cd "$(dirname "$0")/.."

GORELEASER=${GORELEASER:-go run github.com/goreleaser/goreleaser/v2@v2.15.1}
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}

pkg=shoes-scaleset
bin=/usr/bin/shoes-scaleset
unit=/usr/lib/systemd/system/shoes-scaleset.service
envfile=/etc/shoes-scaleset/shoes-scaleset.env
policy=/etc/shoes-scaleset/policy.example.yaml
bash_completion=/usr/share/bash-completion/completions/shoes-scaleset
zsh_completion=/usr/share/zsh/vendor-completions/_shoes-scaleset
fish_completion=/usr/share/fish/vendor_completions.d/shoes-scaleset.fish

fail() {
	echo "packaging/check.sh: FAIL: $*" >&2
	exit 1
}
step() { echo "== packaging: $* (${SECONDS}s)"; }

installed() { dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q ' installed$'; }

# --- preconditions: never touch a machine this check did not prepare -----------
[ "$(id -u)" = 0 ] || fail "run as root: the check installs the package with dpkg"
command -v dpkg >/dev/null || fail "no dpkg: the check needs a Debian-based machine"
[ "$(dpkg --print-architecture)" = amd64 ] ||
	fail "the check builds the amd64 deb; this machine is $(dpkg --print-architecture)"
if installed || [ -e "$bin" ] || [ -e /etc/shoes-scaleset ]; then
	fail "$pkg is already on this machine ($bin or /etc/shoes-scaleset exists): the check would replace and then purge it"
fi
if ! command -v systemd-analyze >/dev/null; then
	# A minimal Debian image may lack it; .ci/run installs its tools the same way.
	apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

# --- build ---------------------------------------------------------------------
step "build the packages (goreleaser, linux/amd64 only)"
# PACKAGE_LINUX_AMD64_ONLY skips the build of the other targets (see
# .goreleaser.yaml); archives, the image and signatures are not needed here.
PACKAGE_LINUX_AMD64_ONLY=1 $GORELEASER release --snapshot --clean --skip=archive,docker,sbom,sign
shopt -s nullglob
debs=(dist/*_amd64.deb)
rpms=(dist/*.x86_64.rpm)
shopt -u nullglob
[ "${#debs[@]}" = 1 ] || fail "want one dist/*_amd64.deb, found ${#debs[@]}: ${debs[*]:-none}"
[ "${#rpms[@]}" = 1 ] && [ -s "${rpms[0]}" ] || fail "want one non-empty dist/*.x86_64.rpm, found ${#rpms[@]}"
deb=${debs[0]}
# The version goreleaser linked into the binary, from its metadata.
want_version=$(sed -n 's/.*"version":"\([^"]*\)".*/\1/p' dist/metadata.json)
[ -n "$want_version" ] || fail "no version in dist/metadata.json"

# --- install -------------------------------------------------------------------
cleanup() {
	if installed; then
		echo "== packaging: purging $pkg"
		dpkg --purge "$pkg" >/dev/null || echo "packaging/check.sh: dpkg --purge $pkg failed; remove it by hand" >&2
	fi
}
trap cleanup EXIT

step "install $deb"
# --force-conf*: never prompt, keep a locally changed conffile.
dpkg -i --force-confdef --force-confold "$deb" || fail "dpkg -i $deb"
installed || fail "dpkg reports $pkg not installed after dpkg -i"

# --- check the files -----------------------------------------------------------
step "check the installed files"
[ -x "$bin" ] || fail "$bin is missing or not executable"
got=$("$bin" version) || fail "$bin version exited non-zero"
case "$got" in
"shoes-scaleset $want_version "*) ;;
*) fail "$bin version printed '$got', want 'shoes-scaleset $want_version (...)'" ;;
esac
echo "$got"

# file_mode PATH MODE OWNER: PATH is a regular file with that mode and owner.
file_mode() {
	[ -f "$1" ] || fail "$1 is missing"
	[ -s "$1" ] || fail "$1 is empty"
	local got
	got=$(stat -c '%a %U:%G' "$1")
	[ "$got" = "$2 $3" ] || fail "$1 has mode and owner '$got', want '$2 $3'"
}
file_mode "$unit" 644 root:root
file_mode "$envfile" 600 root:root
file_mode "$policy" 644 root:root
file_mode "$bash_completion" 644 root:root
file_mode "$zsh_completion" 644 root:root
file_mode "$fish_completion" 644 root:root

grep -qx "ExecStart=$bin run" "$unit" || fail "$unit does not run $bin run"
conffiles=$(dpkg-query -W -f='${Conffiles}' "$pkg")
for f in "$envfile" "$policy"; do
	grep -q " $f " <<<"$conffiles" || fail "$f is not a conffile of $pkg (dpkg-query Conffiles: $conffiles)"
done
# The example env file must set nothing: every line is a comment or empty.
if grep -nvE '^[[:space:]]*([#;].*)?$' "$envfile"; then
	fail "$envfile sets variables (lines above); the shipped example must only have comments"
fi

# The policy example must parse, where the binary can check it (its
# `config check` command).
if "$bin" config check --help >/dev/null 2>&1; then
	"$bin" config check "$policy" >/dev/null || fail "$bin config check $policy rejected the shipped example"
else
	echo "(no \`shoes-scaleset config check\` in this binary: the policy example is not parsed)"
fi

step "check the shell completions"
head -n1 "$zsh_completion" | grep -qx '#compdef shoes-scaleset' || fail "$zsh_completion does not start with #compdef shoes-scaleset"
grep -q '^complete -c shoes-scaleset ' "$fish_completion" || fail "$fish_completion has no 'complete -c shoes-scaleset'"
bash -n "$bash_completion" || fail "$bash_completion is not valid bash"
# Complete `shoes-scaleset ru<TAB>` as bash would: the script asks the
# installed binary (its hidden __complete command) for the candidates. The
# script takes the words from bash-completion's _get_comp_words_by_ref, which
# a clean machine may not have: a minimal stand-in is defined first.
words=$(
	bash -c '
		compopt() { :; } # a builtin that works only inside a real completion
		_get_comp_words_by_ref() {
			words=("${COMP_WORDS[@]}") cword=$COMP_CWORD
			cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
		}
		source "$1"
		COMP_WORDS=(shoes-scaleset ru) COMP_CWORD=1 COMP_LINE="shoes-scaleset ru" COMP_POINT=17
		__start_shoes-scaleset
		echo "${COMPREPLY[*]}"
	' _ "$bash_completion"
) || fail "bash completion of 'shoes-scaleset ru' failed"
words=$(tr ' ' '\n' <<<"$words" | sort | xargs)
[ "$words" = "run runners" ] || fail "bash completion of 'shoes-scaleset ru' gave '$words', want 'run runners'"

# --- the unit ------------------------------------------------------------------
step "systemd-analyze verify $unit"
# verify exits 0 on settings it ignores ("Failed to parse ..., ignoring"), so
# any output counts as a failure.
out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
[ -z "$out" ] || fail "systemd-analyze verify $unit reported: $out"

step "systemd-analyze security --offline=true $unit"
out=$(systemd-analyze security --offline=true "$unit" 2>&1) || fail "systemd-analyze security: $out"
exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
[ -n "$exposure" ] || fail "no exposure level in the output of systemd-analyze security: $out"
echo "exposure $exposure (at most $MAX_EXPOSURE accepted)"
awk -v e="$exposure" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(e <= max) }' ||
	fail "the unit's exposure is $exposure, above $MAX_EXPOSURE: a protection was weakened (see docs/packaging.md)"

# --- reinstall over a local change ---------------------------------------------
step "reinstall over an edited env file"
echo "SHOES_SCALESET_MAX_RUNNERS=3" >>"$envfile"
dpkg -i --force-confdef --force-confold "$deb" >/dev/null || fail "dpkg -i $deb over the installed package"
grep -qx 'SHOES_SCALESET_MAX_RUNNERS=3' "$envfile" || fail "reinstalling the package lost the local change to $envfile"

# --- purge ---------------------------------------------------------------------
step "purge"
dpkg --purge "$pkg" || fail "dpkg --purge $pkg"
installed && fail "$pkg still installed after dpkg --purge"
for f in "$bin" "$unit" "$envfile" "$policy" "$bash_completion" "$zsh_completion" "$fish_completion" /etc/shoes-scaleset; do
	[ ! -e "$f" ] || fail "$f is left after dpkg --purge"
done

step "ok: $deb"
