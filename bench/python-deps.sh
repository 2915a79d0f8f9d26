#!/usr/bin/env bash
# What the PyTorch comparison scripts (bench/pytorch_*.py) import: scripts/install-python-deps.sh.
set -euo pipefail
bash "$(dirname "$0")/../scripts/install-python-deps.sh"
