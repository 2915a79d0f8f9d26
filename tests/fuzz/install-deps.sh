#!/usr/bin/env bash
# The packages of the sanitizer/fuzzing build on top of scripts/install-deps.sh:
# clang 14 with its sanitizer and libFuzzer runtimes (libclang-rt-14-dev),
# llvm-symbolizer for readable stack traces (llvm-14), and LLVM's OpenMP
# runtime, which clang's -fopenmp links (libomp-14-dev).
set -euo pipefail

packages=(clang-14 libclang-rt-14-dev llvm-14 libomp-14-dev)

bash "$(dirname "$0")/../../scripts/apt-install.sh" "fuzz install-deps" "${packages[@]}"
