#!/usr/bin/env bash
# with-node.sh MAJOR COMMAND... - run COMMAND with Node.js MAJOR first on PATH.
#
# The Node binary comes from the npm registry's node-<os>-<arch> package (the
# one the `node` package installs), so this works where only the npm registry
# is reachable. It is unpacked once into ${IOPFD_NODE_CACHE:-~/.cache/iopfd-node},
# into a temporary folder first and then renamed into place, so a run that is
# killed, or two runs at once, never leave a half-written binary behind.
# Nothing in the build, `npm start` or `npm test` uses this script.
#
#   scripts/with-node.sh 22 node scripts/run-tests.mjs   # the suite on Node 22 (after npm run build)
#   scripts/with-node.sh 24 node --version
set -euo pipefail
if [ $# -lt 2 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 MAJOR COMMAND..." >&2
  exit 2
fi
major=$1
shift
case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) echo "$0: unsupported OS $(uname -s)" >&2; exit 1 ;; esac
case "$(uname -m)" in x86_64) arch=x64 ;; aarch64 | arm64) arch=arm64 ;; *) echo "$0: unsupported CPU $(uname -m)" >&2; exit 1 ;; esac
cache=${IOPFD_NODE_CACHE:-${HOME}/.cache/iopfd-node}
dir=$cache/$os-$arch-$major
if ! [ -x "$dir/package/bin/node" ]; then
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  tgz=$(cd "$tmp" && npm pack --loglevel=error "node-$os-$arch@$major" | tail -n 1)
  tar -xzf "$tmp/$tgz" -C "$tmp"
  # Another run may have won the race: its copy is complete, keep it.
  [ -e "$dir/package" ] || mv "$tmp/package" "$dir/package"
  rm -rf "$tmp"
  trap - EXIT
fi
PATH="$dir/package/bin:$PATH" exec "$@"
