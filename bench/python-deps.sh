#!/usr/bin/env bash
# Installs what the PyTorch comparison scripts (bench/pytorch_*.py) import:
# Debian's python3-torch (1.13), PIL and numpy. Run by the benchmarks that use them.
set -euo pipefail
for p in python3-torch python3-pil python3-numpy; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
