#!/usr/bin/env bash
# Writes RUN/card.json, the quantization card `dfq run` writes, from what the
# single commands left in RUN (quantize.json, fp32.json, integer.json,
# model.dfq, synth.json): a fixture for the report until `dfq run` exists.
# usage: write_card.sh RUN MODEL.pt WBITS ABITS CALIBRATION_TEXT [CHOICE_JSON...]
#   each CHOICE_JSON is one more {"name": ..., "value": ...} entry.
set -euo pipefail
run="$1" model="$2" wbits="$3" abits="$4" calibration="$5"
shift 5

# field FILE KEY: the first number of KEY in a JSON file ("null" when absent).
field() { { grep -Eo "\"$2\": *[-0-9.e+]+" "$1" 2>/dev/null || true; } | head -1 | sed 's/.*: *//' | grep . || echo null; }
# text FILE KEY: the first string value of KEY.
text() { grep -Eo "\"$2\": *\"[^\"]*\"" "$1" | head -1 | sed 's/.*: *"//; s/"$//'; }

# Per-layer weight bits from quantize.json's "layers" (pretty-printed by dfq,
# keys sorted); activation bits: 8 for the first and last layer, else ABITS.
layers="$(awk -v abits="$abits" '
  /^  "layers": \[/ { inside = 1; next }
  inside && /^  \]/ { inside = 0 }
  inside && /"bits":/ { gsub(/[^0-9]/, "", $2); bits = $2 }
  inside && /"name":/ { name = $2; gsub(/[",]/, "", name) }
  inside && /"residual":/ { residual = ($2 ~ /true/) ? "true" : "false" }
  inside && /^    }/ { rows[n++] = sprintf("{\"name\": \"%s\", \"weight_bits\": %s, \"activation_bits\": ACT, \"residual\": %s}", name, bits, residual) }
  END { for (i = 0; i < n; i++) { row = rows[i]; sub(/ACT/, (i == 0 || i == n - 1) ? 8 : abits, row); printf "%s%s", (i ? ",\n    " : ""), row } }
' "$run/quantize.json")"

t32="$(field "$run/fp32.json" top1)" t32_5="$(field "$run/fp32.json" top5)"
ti="$(field "$run/integer.json" top1)" ti_5="$(field "$run/integer.json" top5)"
extra=""
for choice in "$@"; do extra="$extra,
    $choice"; done
synth_seconds="$(field "$run/synth.json" seconds)"

cat >"$run/card.json" <<EOF
{
  "tool": {"name": "dfq", "version": "fixture"},
  "model": {"path": "$model", "sha256": "$(sha256sum "$model" | cut -d' ' -f1)", "name": "$(basename "$model" .pt)"},
  "wbits": $wbits, "abits": $abits,
  "choices": [
    {"name": "Calibration data", "value": "$calibration"},
    {"name": "Weight granularity", "value": "symmetric, per output channel"},
    {"name": "Weight range", "value": "$(text "$run/quantize.json" weight_range) ($(text "$run/quantize.json" weight_objective) error)"},
    {"name": "Activation range", "value": "$(text "$run/quantize.json" act_range), per tensor"},
    {"name": "Bias correction", "value": "$(text "$run/quantize.json" bias_correction)"},
    {"name": "Rounding", "value": "$(text "$run/quantize.json" reconstruct)"}$extra
  ],
  "layers": [
    $layers
  ],
  "results": {"fp32": {"top1": $t32, "top5": $t32_5, "images": $(field "$run/fp32.json" images)},
              "integer": {"top1": $ti, "top5": $ti_5, "images": $(field "$run/integer.json" images)},
              "drop_top1": $(awk -v a="$t32" -v b="$ti" 'BEGIN { printf "%.4f", a - b }'),
              "drop_top5": $(awk -v a="$t32_5" -v b="$ti_5" 'BEGIN { printf "%.4f", a - b }')},
  "sizes": {"fp32_bytes": $(field "$run/quantize.json" fp32_parameter_bytes), "artifact_bytes": $(stat -c %s "$run/model.dfq")},
  "stages": [{"name": "synthesis", "seconds": $synth_seconds, "cached": false},
             {"name": "quantization", "seconds": $(field "$run/quantize.json" seconds), "cached": false},
             {"name": "evaluation (FP32)", "seconds": $(field "$run/fp32.json" seconds), "cached": false},
             {"name": "evaluation (integer)", "seconds": $(field "$run/integer.json" seconds), "cached": false}],
  "seed": 0, "threads": $(field "$run/quantize.json" threads), "machine": "$(uname -m), $(nproc) cores"
}
EOF
