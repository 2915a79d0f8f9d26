#!/usr/bin/env bash
# The packages of the sanitizer/fuzzing build on top of scripts/install-deps.sh:
# clang 14 with its sanitizer and libFuzzer runtimes (libclang-rt-14-dev),
# llvm-symbolizer for readable stack traces (llvm-14), and LLVM's OpenMP
# runtime, which clang's -fopenmp links (libomp-14-dev).
set -euo pipefail

packages=(clang-14 libclang-rt-14-dev llvm-14 libomp-14-dev)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "fuzz install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "fuzz install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "fuzz install-deps: done"
