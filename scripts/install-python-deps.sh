#!/usr/bin/env bash
# Installs, from Debian's archive, what the project's Python tools import
# (tools/*.py, bench/*.py; run them with /usr/bin/python3, not a pyenv python).
set -euo pipefail

packages=(
  python3-torch        # 1.13, the same LibTorch version dfq links
  python3-torchvision  # tools/make_torchvision_models.py
  python3-onnx
  python3-numpy
  python3-pil          # bench/pytorch_*.py
)

bash "$(dirname "$0")/apt-install.sh" "install-python-deps" "${packages[@]}"
