package shoesfake

import "strings"

// shq quotes s for bash.
func shq(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shqAll quotes each word and joins them with spaces.
func shqAll(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = shq(w)
	}
	return strings.Join(q, " ")
}

// render replaces @NAME@ placeholders in a script template.
func render(tmpl string, kv ...string) string {
	pairs := make([]string, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		pairs = append(pairs, "@"+kv[i]+"@", kv[i+1])
	}
	return strings.NewReplacer(pairs...).Replace(tmpl)
}

// wrapperScript runs setup.sh and records how it ended. Recording is done
// by the script itself so it works after the plugin process is gone.
// Placeholders: DIR, RECORD.
const wrapperScript = `#!/bin/bash
# Written by shoesfake: runs setup.sh and records how it ended.
cd @DIR@ || exit 1
bash ./setup.sh </dev/null >>./script.log 2>&1
code=$?
echo "$code" >./exit_code
@RECORD@
exit "$code"
`

// recordExit appends a script_exit event to the call log. Placeholders:
// CLOUD_ID, CALL_LOG. The line is built in a file first, then appended by
// cat in one write, under an exclusive flock of the log as appendLine
// takes: printf may write a long line in several pieces, and a
// DeleteInstance that kills the script between two of them left half a
// line, which the next line then continued (CI: "invalid character after
// object key:value pair").
const recordExit = `tail=$(tail -c 2048 ./script.log | tr -d '\000-\010\013\014\016-\037')
tail=${tail//\\/\\\\}
tail=${tail//\"/\\\"}
tail=${tail//$'\t'/\\t}
tail=${tail//$'\r'/\\r}
tail=${tail//$'\n'/\\n}
end=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
line=$(printf '{"event":"script_exit","pid":%d,"cloud_id":"%s","exit_code":%d,"stderr_tail":"%s","end":"%s"}' \
  "$$" @CLOUD_ID@ "$code" "$tail" "$end")
printf '%s\n' "$line" >./script_exit.json
{ flock 9 2>/dev/null; cat ./script_exit.json >&9; } 9>>@CALL_LOG@`

// curlShim serves a fake actions-runner tarball for a concrete release URL
// and fails like "curl -f" for anything else. Placeholders: DIR, PAYLOAD.
const curlShim = `#!/bin/bash
# curl shim written by shoesfake: only a concrete actions-runner release
# tarball URL "downloads", and yields a fake runner whose run.sh runs the
# sim runner.
url="" out="" remote_name=0
while [ $# -gt 0 ]; do
  a=$1
  shift
  case $a in
    -o | --output) out=$1; shift ;;
    --output=*) out=${a#--output=} ;;
    -O | --remote-name) remote_name=1 ;;
    -H | --header | -A | --user-agent | -u | --user | -d | --data | --data-raw | --data-binary | \
      -X | --request | --retry | --retry-delay | --retry-max-time | -m | --max-time | \
      --connect-timeout | -w | --write-out | -e | --referer | -b | --cookie | -c | --cookie-jar | \
      -T | --upload-file | --cacert | --cert | --key | -x | --proxy | -r | --range | -z | --time-cond | \
      -K | --config) shift ;;
    --*) ;;
    -?*)
      flags=${a#-}
      case $flags in
        *o) out=$1; shift ;;
        *o*) out=${flags#*o} ;;
      esac
      case $flags in *O*) remote_name=1 ;; esac
      ;;
    *) url=$a ;;
  esac
done

re='^https://github\.com/actions/runner/releases/download/v([0-9]+\.[0-9]+\.[0-9]+)/actions-runner-(linux|osx)-(x64|arm64)-([0-9]+\.[0-9]+\.[0-9]+)\.tar\.gz$'
if [[ ! $url =~ $re ]] || [[ ${BASH_REMATCH[1]} != "${BASH_REMATCH[4]}" ]]; then
  echo "curl shim: not a concrete actions-runner tarball URL: $url" >&2
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) curl shim: not a concrete actions-runner tarball URL: $url" >>@DIR@/errors.log
  exit 22
fi

if [ "$remote_name" = 1 ] && [ -z "$out" ]; then
  out=${url##*/}
fi
if [ -z "$out" ] || [ "$out" = - ]; then
  exec tar -czf - -C @PAYLOAD@ .
fi
tar -czf "$out" -C @PAYLOAD@ . || exit 23
`

// sudoShim drops sudo's options and runs the command as the current user.
const sudoShim = `#!/bin/bash
# sudo shim written by shoesfake: drops sudo's options and runs the command
# as the current user.
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; break ;;
    -D | --chdir) cd "$2" || exit 1; shift 2 ;;
    --chdir=*) cd "${1#--chdir=}" || exit 1; shift ;;
    -u | -g | -C | -p | -r | -t | -T | -U | --user | --group | --close-from | --prompt | \
      --role | --type | --command-timeout | --other-user) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
[ $# -eq 0 ] && exit 0
if [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; then
  exec env "$@"
fi
exec "$@"
`

// noopShim stands in for commands that would change the host's users or
// file ownership. Placeholder: NAME.
const noopShim = `#!/bin/bash
# @NAME@ shim written by shoesfake: a no-op on a dev box.
echo "@NAME@ shim: skipped: @NAME@ $*" >&2
exit 0
`

// idShim answers "id [-u] USER" for any user with the current user.
const idShim = `#!/bin/bash
# id shim written by shoesfake: any user name is the current user.
args=()
for a in "$@"; do
  case $a in -*) args+=("$a") ;; esac
done
PATH=$SHOESFAKE_ORIG_PATH exec id "${args[@]}"
`

// runSh is the fake runner's run.sh. Placeholder: RUNNER.
const runSh = `#!/bin/bash
# Fake actions-runner run.sh written by shoesfake: runs the sim runner.
exec @RUNNER@ "$@"
`

const configSh = `#!/bin/bash
# Fake actions-runner config.sh written by shoesfake: a JIT runner needs no
# configuration.
echo "config.sh (shoesfake): nothing to configure; use run.sh --jitconfig"
exit 0
`

const installDepsSh = `#!/bin/bash
# Fake installdependencies.sh written by shoesfake.
exit 0
`
