#!/usr/bin/env bash
# usage: scripts/apt-install.sh LABEL PACKAGE...
# Installs from Debian's archive those of the PACKAGEs that are not installed
# yet (one apt-get update first, only then); prints LABEL: what it did. The one
# install step of scripts/install-deps.sh, scripts/install-python-deps.sh and
# tests/fuzz/install-deps.sh.
set -euo pipefail
label="$1"
shift
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "$label: all $# packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "$label: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "$label: done"
