#!/usr/bin/env bash
# The run report in a real browser. Makes one small real run of the embedded
# model (synth -> quantize -> eval at W4A4, plus the card.json `dfq run` would
# write: dfq run) and a sibling folder whose card says W8A8, checks
# `dfq report`'s errors, writes report.html, then loads it in headless Chromium
# and checks that
#   (a) the browser logs no console message at all (the page has no scripts;
#       a blocked load or a CSP violation would be logged),
#   (b) every <img> decoded (naturalWidth > 0) and every inline <svg> was laid
#       out with a non-zero box (a copy of the page with a check script added),
#   (c) a screenshot can be taken (written to SCREENSHOT when given).
# usage: report_browser_test.sh BUILD/dfq SOURCE_DIR [SCREENSHOT.png]
# Exit 77 (ctest: skipped) when chromium is absent and the checks before the
# browser passed, except in CI (CI set), where that is a failure.
set -uo pipefail
dfq="$1"
src="$2"
screenshot="${3:-}"
bin_dir="$(dirname "$dfq")"

tmp="$(mktemp -d)"
[ -n "${KEEP_TMP:-}" ] && echo "keeping $tmp" || trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok      $1"; }
# bad NAME [FILE]: a failed check, with the first lines of FILE (command output, browser log).
bad() { failed=$((failed + 1)); echo "FAILED  $1"; [ -n "${2:-}" ] && grep -v dbus "$2" | sed 's/^/        | /' | head -20; return 0; }
run() { # run NAME command...: the command must succeed
  local name="$1"
  shift
  if "$@" >"$tmp/out" 2>&1; then ok "$name"; else bad "$name" "$tmp/out"; fi
}
# expect NAME CODE PATTERN -- command...: exit code CODE and output matching PATTERN.
expect() {
  local name="$1" code="$2" pattern="$3"
  shift 4
  "$@" >"$tmp/out" 2>&1
  local actual=$?
  if [ "$actual" -eq "$code" ] && grep -Eq -- "$pattern" "$tmp/out"; then ok "$name"; else
    echo "        exit $actual (expected $code), pattern '$pattern'"
    bad "$name" "$tmp/out"
  fi
}

# ---- a real run of the embedded model --------------------------------------
model="$src/weights/fashion_cnn.pt"
runs="$tmp/runs"
first="$runs/fashion-w4a4"
run "dfq synth --dump-png" "$dfq" synth --model "$model" --preset fashion-mnist --method direct --count 20 --iters 20 \
  --out "$first/synth" --dump-png --quiet
# Evaluated on the synthetic PNGs themselves (10 label folders): real eval JSON
# in seconds, without converting the Fashion-MNIST test set.
data="$first/synth/png"
cp -r "$data" "$tmp/data"
data="$tmp/data"
rm -rf "$first"
# The fastest options: the report needs real JSON, not the best accuracy.
run "dfq run W4A4 writes the run folder" "$dfq" run --model "$model" --data "$data" --preset fashion-mnist \
  --calib-count 20 --iters 20 --wbits 4 --abits 4 --reconstruct none --bias-correction none --no-cache --quiet --out "$first"
# A choice whose name carries markup (the page must show it as text).
/usr/bin/python3 - "$first/card.json" <<'PY'
import json, sys
card = json.load(open(sys.argv[1]))
card["choices"].append({"name": '<b id="injected">escaping check</b>', "value": "a name with markup must be shown as text"})
json.dump(card, open(sys.argv[1], "w"), indent=2)
PY
# A sibling run of the same model at W8A8 (only its card matters to the report).
mkdir -p "$runs/fashion-w8a8"
# set_card_field IN OUT KEY JSON_VALUE: a copy of a card with one top-level field replaced.
set_card_field() {
  /usr/bin/python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c[sys.argv[3]] = json.loads(sys.argv[4]); json.dump(c, open(sys.argv[2], "w"), indent=2)' "$@"
}
set_card_field "$first/card.json" "$runs/fashion-w8a8/card.json" wbits 8
set_card_field "$runs/fashion-w8a8/card.json" "$runs/fashion-w8a8/card.json" abits 8

# ---- dfq report's command line -------------------------------------------------
expect "dfq report --help shows an example" 0 "example:" -- "$dfq" report --help
expect "dfq --help lists report" 0 "report  " -- "$dfq" --help
expect "missing --run is refused" 1 "run.*required|required.*run" -- "$dfq" report
expect "missing run folder is named" 1 "$tmp/none.*expected an existing folder" -- "$dfq" report --run "$tmp/none"
mkdir -p "$tmp/empty-run"
expect "missing card.json is named" 1 "$tmp/empty-run/card.json: expected the run's quantization card" -- \
  "$dfq" report --run "$tmp/empty-run"
mkdir -p "$tmp/bad-run"
printf '{"wbits": 4,' >"$tmp/bad-run/card.json"
expect "malformed card.json is named" 1 "bad-run/card.json: expected valid JSON, found a syntax error at line 1" -- \
  "$dfq" report --run "$tmp/bad-run"
cp "$first/quantize.json" "$tmp/bad-run/quantize.json"
set_card_field "$first/card.json" "$tmp/bad-run/card.json" wbits '"four"' 
expect "a field of the wrong type is named" 1 "card.json field 'wbits': expected a number, found a string" -- \
  "$dfq" report --run "$tmp/bad-run"
expect "unwritable --out is named" 1 "$tmp/no-dir/r.html" -- "$dfq" report --run "$first" --out "$tmp/no-dir/r.html"

report="$first/report.html"
run "dfq report writes report.html" "$dfq" report --run "$first"
if [ -s "$report" ]; then ok "report.html is not empty ($(stat -c %s "$report") bytes)"; else bad "report.html missing"; fi
grep -q "Accuracy vs. bit width" "$report" && grep -q "<text>W8A8</text>" "$report" &&
  ok "the sibling W8A8 run is on the accuracy curve" || bad "accuracy curve with the W8A8 sibling"
if grep -Eiq "https?://|<script|<link [^>]*href=\"[^d#]" "$report"; then bad "report references nothing outside"; else ok "report references nothing outside"; fi

# ---- the browser -------------------------------------------------------------
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
  if [ -n "${CI:-}" ]; then
    bad "chromium is not installed, and CI must run the browser checks (scripts/install-deps.sh installs it)"
  else
    echo "skipped: chromium is not installed (Debian package chromium, see scripts/install-deps.sh): the report is not checked in a browser"
  fi
  echo "report_browser_test: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && exit 77
  exit 1
fi
# Flags as for any headless run on this closed network: no background
# connections, a fresh profile.
chrome() {
  "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --disable-extensions --user-data-dir="$tmp/profile" \
    --enable-logging=stderr --v=0 "$@"
}

# (a) the page as written: no console message while it loads.
chrome --dump-dom "file://$report" >"$tmp/dom.html" 2>"$tmp/log"
if [ ! -s "$tmp/dom.html" ]; then
  bad "chromium loads report.html" "$tmp/log"
else
  ok "chromium loads report.html"
fi
if grep -q "CONSOLE" "$tmp/log"; then
  grep "CONSOLE" "$tmp/log" >"$tmp/console"; bad "no console messages" "$tmp/console"
else
  ok "no console messages"
fi
grep -q "<b id=\"injected\"" "$tmp/dom.html" && bad "markup in a card name became an element" || ok "markup in a card name stays text"

# (b) a copy with a check script (the page's own CSP forbids scripts): every image
# decoded, every SVG laid out, no resource error.
check_script='<script>
var dfqErrors = [];
window.addEventListener("error", function (e) { dfqErrors.push(e.message || (e.target && (e.target.src || e.target.tagName)) || "error"); }, true);
window.addEventListener("load", function () {
  var out = [];
  var imgs = document.images, svgs = document.querySelectorAll("svg");
  out.push("images " + imgs.length);
  for (var i = 0; i < imgs.length; i++)
    if (!imgs[i].complete || imgs[i].naturalWidth === 0) out.push("BROKEN image " + i + " " + imgs[i].alt);
  out.push("svgs " + svgs.length);
  for (var k = 0; k < svgs.length; k++) {
    var r = svgs[k].getBoundingClientRect();
    if (!(r.width > 0 && r.height > 0)) out.push("EMPTY svg " + k);
    if (svgs[k].querySelectorAll("text").length === 0) out.push("EMPTY svg text " + k);
  }
  for (var j = 0; j < dfqErrors.length; j++) out.push("ERROR " + dfqErrors[j]);
  var pre = document.createElement("pre");
  pre.id = "dfq-check";
  pre.textContent = out.join("\n");
  document.body.appendChild(pre);
});
</script>'
# (through the environment: awk -v would turn the script's "\n" into newlines)
CHECK_SCRIPT="$check_script" awk '
  /Content-Security-Policy/ { next }
  { print }
  /<head>/ { print ENVIRON["CHECK_SCRIPT"] }
' "$report" >"$first/check.html"
chrome --dump-dom "file://$first/check.html" >"$tmp/check-dom.html" 2>"$tmp/log2"
result="$(sed -n '/<pre id="dfq-check">/,/<\/pre>/p' "$tmp/check-dom.html" | sed 's/<[^>]*>//g')"
images="$(echo "$result" | awk '/^images / { print $2 }')"
svgs="$(echo "$result" | awk '/^svgs / { print $2 }')"
echo "        check script: images=$images svgs=$svgs"
[ -n "$result" ] && ok "the check script ran" || bad "the check script ran" "$tmp/log2"
# 10 labels of synthetic images; bits, weight SQNR, activation SQNR, accuracy, BN loss.
[ "${images:-0}" -eq 10 ] && ok "10 image rows" || bad "10 image rows (found ${images:-none})"
[ "${svgs:-0}" -eq 5 ] && ok "5 plots" || bad "5 plots (found ${svgs:-none})"
if echo "$result" | grep -Eq "BROKEN|EMPTY|ERROR"; then
  echo "$result" >"$tmp/result"; bad "every image decoded and every plot laid out" "$tmp/result"
else
  ok "every image decoded and every plot laid out"
fi

# (c) a screenshot of the page as written.
shot="${screenshot:-$tmp/report.png}"
chrome --screenshot="$shot" --window-size=1280,2200 --hide-scrollbars "file://$report" >"$tmp/log3" 2>&1
if [ -s "$shot" ] && [ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; then
  ok "screenshot $shot"
else
  bad "screenshot" "$tmp/log3"
fi

echo "report_browser_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
