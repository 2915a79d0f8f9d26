#!/usr/bin/env bash
# Installs every build and run-time dependency from Debian's archive.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libtorch-dev libopencv-dev libeigen3-dev libboost-program-options-dev
  googletest libgtest-dev nlohmann-json3-dev zlib1g-dev
  libdnnl-dev  # oneDNN 2.6: the integer engine's int8 convolutions (VNNI)
  ocl-icd-opencl-dev  # only Recommended by libdnnl-dev, but its CMake config requires OpenCL
  libonnx-dev libprotobuf-dev  # ONNX 1.12 protobuf classes and checker: dfq export writes ONNX QDQ files
  libssl-dev   # OpenSSL: SHA-256 content addresses of the dfq run cache and the card
  libglpk-dev  # GLPK 5.0: the exact integer linear program of mixed-precision bit allocation
  libopenblas0-openmp  # replaces the reference BLAS libtorch links (alternatives): matmul ~20x faster
  dataset-fashion-mnist
  gnuplot-nox  # dfq report: the plots, rendered as inline SVG
  chromium  # tests/report_browser_test.sh: the report checked in headless Chromium
  python3-onnx python3-numpy  # tests/ort_tools_test.sh builds its ONNX models and expected outputs with them
)

bash "$(dirname "$0")/apt-install.sh" "install-deps" "${packages[@]}"
# ONNX Runtime for Node.js (tools/ort_eval.js runs `dfq export` models): from npm, not Debian.
if command -v npm >/dev/null 2>&1; then bash "$(dirname "$0")/install-ort.sh"; else echo "install-deps: npm missing, skipping onnxruntime-node (scripts/install-ort.sh installs it with Debian's nodejs and npm)"; fi
