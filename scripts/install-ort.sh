#!/usr/bin/env bash
# Installs ONNX Runtime for Node.js (onnxruntime-node, exactly the version
# pinned in tools/ort/package.json and package-lock.json) into
# tools/ort/node_modules, for tools/ort_eval.js: running the models `dfq export`
# writes in a second, independent runtime. CPU only: the package's postinstall
# script would otherwise download the CUDA/TensorRT libraries from NuGet
# (node_modules/onnxruntime-node/script/install.js exits at once when
# ONNXRUNTIME_NODE_INSTALL=skip). Installs Debian's nodejs and npm first, only
# when node is missing. A no-op when that version is installed already; prints
# one line of what it did.
# usage: scripts/install-ort.sh
set -euo pipefail
version="1.22.0"
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/tools/ort"
pkg="$dir/node_modules/onnxruntime-node"

# installed_version: the version of tools/ort/node_modules/onnxruntime-node when
# its native binding for this platform is there too (else nothing).
installed_version() {
  command -v node >/dev/null 2>&1 || return 0
  node -e '
    const fs = require("fs"), path = require("path"), pkg = process.argv[1];
    try {
      const v = JSON.parse(fs.readFileSync(path.join(pkg, "package.json"), "utf8")).version;
      const bin = path.join(pkg, "bin", "napi-v6", process.platform, process.arch, "onnxruntime_binding.node");
      if (fs.existsSync(bin) && fs.existsSync(path.join(pkg, "..", "onnxruntime-common", "package.json"))) console.log(v);
    } catch (e) {}' "$pkg"
}

if [ "$(installed_version)" = "$version" ]; then
  echo "install-ort: onnxruntime-node $version already in tools/ort/node_modules"
  exit 0
fi

if ! command -v node >/dev/null 2>&1; then
  bash "$root/scripts/apt-install.sh" "install-ort" nodejs npm >&2
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "install-ort: error: npm not found (node is $(command -v node || echo missing)); install npm, e.g. sudo apt-get install npm" >&2
  exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cd "$dir"
# npm ci: exactly the versions of package-lock.json, node_modules made afresh.
if ! ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund >"$log" 2>&1; then
  echo "install-ort: error: npm ci in tools/ort failed:" >&2
  tail -20 "$log" | sed 's/^/  /' >&2
  exit 1
fi
got="$(installed_version)"
if [ "$got" != "$version" ]; then
  echo "install-ort: error: tools/ort/node_modules has onnxruntime-node '${got:-none}', expected $version" >&2
  exit 1
fi
echo "install-ort: installed onnxruntime-node $version (CPU, GPU libraries skipped) into tools/ort/node_modules with npm $(npm --version)"
