#!/usr/bin/env bash
# Installs, from Debian's archive, what the project's Python tools import
# (tools/*.py, bench/*.py; run them with /usr/bin/python3, not a pyenv python).
set -euo pipefail

packages=(
  python3-torch        # 1.13, the same LibTorch version dfq links
  python3-torchvision  # tools/make_torchvision_models.py
  python3-onnx
  python3-numpy
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-python-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-python-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-python-deps: done"
