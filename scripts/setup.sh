#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine:
#   scripts/setup.sh demo   install dependencies, build, run the main job on the embedded model
#   scripts/setup.sh test   install dependencies, build, run the whole test suite
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
case "$mode" in
  demo|test) ;;
  *) echo "usage: scripts/setup.sh demo|test" >&2; exit 2 ;;
esac

bash scripts/install-deps.sh
bash scripts/build.sh
if [ "$mode" = demo ]; then
  bash scripts/demo.sh
else
  cd build && ctest --output-on-failure -j2
fi
