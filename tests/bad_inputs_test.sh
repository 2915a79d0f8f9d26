#!/usr/bin/env bash
# Bad input never crashes and never loses data: one row of the table below per
# case, each registered as its own ctest test (tests/CMakeLists.txt reads the
# rows), so a failure names the case.
#
# usage: bad_inputs_test.sh BUILD_DIR SOURCE_DIR CASE   (run one case)
#        bad_inputs_test.sh BUILD_DIR SOURCE_DIR --all  (run every case, for a quick local check)
#        bad_inputs_test.sh BUILD_DIR SOURCE_DIR --list
#
# Why a shell table and not GoogleTest: every case is a whole `dfq` process
# (exit code, stderr, files on disk, resource limits, mount namespaces), which
# the shell expresses directly; a row is one line to read and to add.
#
# A row: case | command | the input it breaks | fixtures | exit code | message (ERE) | must not exist | arguments
#   fixtures:  fx_* functions below, built in a fresh temp dir $T (nothing from ../shared is needed)
#   arguments: eval'd, with $M (embedded Fashion-MNIST model), $D (its 10-class image folder),
#              $O (an output dir: unchanged after a failure), $B (a regular file, so $B/x cannot be created)
# Every failing row must also: print exactly one line on stderr, "error: ..."; leave $O exactly as it was
# (no partial, zero-byte or temporary files; an earlier output survives); leave nothing on a tmpfs it used.
# Disk full: `limit_fsize KB cmd` (ulimit -f; dfq ignores SIGXFSZ so the write fails with EFBIG) and
# `on_tmpfs SIZE ro|rw|full cmd` (a tmpfs at $T/mnt in a private mount namespace; skipped where mounting is
# not permitted). Not writable: a path under $B, or a read-only tmpfs. `as_nobody cmd` drops root privileges
# so that a mode-000 file is really unreadable (skipped where that is not possible).
set -uo pipefail
build="$1"
src="$2"
what="${3:---list}"
dfq_bin="$build/dfq"
make_image="$build/tests/make_test_image"
M="$src/weights/fashion_cnn.pt"
models="$src/tests/data/models"

table() {
  cat <<'EOF'
# --- model file ---------------------------------------------------------------------------------------------------------
model_missing_info         | info     | --model: no such file           | -                  | 1 | model '.*missing\.pt': expected an existing TorchScript file, found no such file | - | dfq info --model $T/missing.pt
model_missing_eval         | eval     | --model: no such file           | data               | 1 | missing\.pt.*no such file | $O/e.json | dfq eval --model $T/missing.pt --data $D --preset fashion-mnist --json $O/e.json
model_missing_synth        | synth    | --model: no such file           | -                  | 1 | missing\.pt.*no such file | $O/s | dfq synth --model $T/missing.pt --preset fashion-mnist --out $O/s
model_missing_quantize     | quantize | --model: no such file           | data               | 1 | missing\.pt.*no such file | $O/q.dfq | dfq quantize --model $T/missing.pt --preset fashion-mnist --calib-data $D --out $O/q.dfq
model_directory            | info     | --model: a directory            | -                  | 1 | model '.*': expected a regular file | - | dfq info --model $T
model_unreadable           | info     | --model: mode 000 (not root)    | unreadable_model   | 1 | model '.*m000\.pt': expected a readable file, found permission denied | - | as_nobody $dfq_bin info --model $T/m000.pt
model_not_torchscript      | info     | --model: a text file            | text               | 1 | text\.pt': expected a TorchScript archive | - | dfq info --model $T/text.pt
model_not_torchscript_eval | eval     | --model: a text file            | text data          | 1 | text\.pt': expected a TorchScript archive | $O/e.json | dfq eval --model $T/text.pt --data $D --preset fashion-mnist --json $O/e.json
model_not_torchscript_synth | synth   | --model: a text file            | text               | 1 | text\.pt': expected a TorchScript archive | $O/s | dfq synth --model $T/text.pt --preset fashion-mnist --out $O/s
model_not_torchscript_quantize | quantize | --model: a text file      | text data          | 1 | text\.pt': expected a TorchScript archive | $O/q.dfq | dfq quantize --model $T/text.pt --preset fashion-mnist --calib-data $D --out $O/q.dfq
model_zero_byte            | info     | --model: a 0-byte file          | zero_model         | 1 | zero\.pt': expected a TorchScript archive | - | dfq info --model $T/zero.pt
model_truncated            | eval     | --model: first 4 KiB of a model | truncated_model data | 1 | cut\.pt': expected a TorchScript archive | $O/e.json | dfq eval --model $T/cut.pt --data $D --preset fashion-mnist --json $O/e.json
model_unsupported_op_info  | info     | --model: aten::cumsum           | -                  | 1 | unsupported_cumsum\.pt': unsupported op aten::cumsum in scope 'head' | - | dfq info --model $models/unsupported_cumsum.pt
model_unsupported_op_eval  | eval     | --model: aten::cumsum           | data               | 1 | unsupported op aten::cumsum | $O/e.json | dfq eval --model $models/unsupported_cumsum.pt --data $D --json $O/e.json
model_unsupported_op_synth | synth    | --model: aten::cumsum           | -                  | 1 | unsupported op aten::cumsum | $O/s | dfq synth --model $models/unsupported_cumsum.pt --input-size 8x8 --out $O/s
model_unsupported_op_quantize | quantize | --model: aten::cumsum       | -                  | 1 | unsupported op aten::cumsum | $O/q.dfq | dfq quantize --model $models/unsupported_cumsum.pt --input-size 8x8 --out $O/q.dfq
model_layer_norm_quantize  | quantize | --model: aten::layer_norm (ConvNeXt) | -             | 1 | unsupported op aten::layer_norm in scope 'norm' | $O/q.dfq | dfq quantize --model $models/unsupported_layer_norm.pt --input-size 8x8 --out $O/q.dfq
model_vector_input_info    | info     | --model: a vector input         | -                  | 1 | expected an image input N x C x H x W.*vector of 16 features | - | dfq info --model $models/vector_input.pt
model_two_inputs_eval      | eval     | --model: two inputs             | data               | 1 | expected forward\(\) taking one image tensor.*taking 2 inputs | $O/e.json | dfq eval --model $models/two_inputs.pt --data $D --json $O/e.json
model_no_bn_synth          | synth    | --model: no BN layers           | -                  | 1 | linear\.pt': expected batch-norm layers.*found none \(calibrate such a model on real images | $O/s | dfq synth --model $models/linear.pt --input-size 8x8 --count 4 --out $O/s
model_no_bn_quantize_synthetic | quantize | --model: no BN layers, --calib synthetic | - | 1 | linear\.pt': expected batch-norm layers.*--calib-data | $O/q.dfq | dfq quantize --model $models/linear.pt --input-size 8x8 --calib-count 4 --out $O/q.dfq
model_no_bn_quantize_real_data | quantize | --model: no BN layers, real --calib-data (accepted) | rgb_data | 0 | wrote .*q\.dfq | - | dfq quantize --model $models/linear.pt --calib-data $T/rgb --reconstruct none --quiet --out $O/q.dfq
model_outputs_vs_folders_eval | eval  | --data: 9 class folders, 10 outputs | data nine_classes | 1 | nine': expected 10 class folders.*found 9 | $O/e.json | dfq eval --model $M --data $T/nine --preset fashion-mnist --json $O/e.json
model_outputs_vs_folders_quantize | quantize | --calib-data: 9 class folders (accepted: labels unused) | data nine_classes | 0 | wrote .*q\.dfq | - | dfq quantize --model $M --preset fashion-mnist --calib-data $T/nine --reconstruct none --quiet --out $O/q.dfq
class_names_missing_folder | eval     | --class-names: a folder not listed | data names9     | 1 | class folder '9': expected a name listed in --class-names | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --class-names $T/names9.txt --json $O/e.json
model_input_size_vs_images | eval     | --data: 10x10 images, model takes 8x8 only | rgb_big_data | 1 | model '.*fixed_size_linear\.pt': expected an input of the size it was built for, found 3x10x10 images \(node 'fc' \(linear\) | $O/e.json | dfq eval --model $models/fixed_size_linear.pt --data $T/rgbbig --json $O/e.json
model_input_size_vs_calib  | quantize | --calib-data: 10x10 images, model takes 8x8 only | rgb_big_data | 1 | model '.*fixed_size_linear\.pt': expected an input of the size it was built for, found 3x10x10 images | $O/q.dfq | dfq quantize --model $models/fixed_size_linear.pt --calib-data $T/rgbbig --out $O/q.dfq
model_input_size_vs_qmodel | eval     | --data: 10x10 images, quantized model takes 8x8 only | fixed_qmodel rgb_big_data | 1 | fixed\.dfq': expected an input of the size it was built for, found 3x10x10 images | $O/e.json | dfq eval --qmodel $T/fixed.dfq --data $T/rgbbig --json $O/e.json
# --- data folder ---------------------------------------------------------------------------------------------------------
data_missing_eval          | eval     | --data: no such folder          | -                  | 1 | data folder '.*none': expected an existing directory | $O/e.json | dfq eval --model $M --data $T/none --preset fashion-mnist --json $O/e.json
data_missing_quantize      | quantize | --calib-data: no such folder    | -                  | 1 | none': expected an existing directory | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib-data $T/none --out $O/q.dfq
data_is_file               | eval     | --data: a regular file          | text               | 1 | data folder '.*text\.pt': expected a directory | $O/e.json | dfq eval --model $M --data $T/text.pt --preset fashion-mnist --json $O/e.json
data_empty_eval            | eval     | --data: an empty folder         | empty_data         | 1 | empty': expected one sub-folder per class, found no sub-folders | $O/e.json | dfq eval --model $M --data $T/empty --preset fashion-mnist --json $O/e.json
data_empty_quantize        | quantize | --calib-data: an empty folder   | empty_data         | 1 | empty': expected one sub-folder per class, found no sub-folders | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib-data $T/empty --out $O/q.dfq
class_folder_empty_eval    | eval     | --data: a class folder without images | bad_empty_class | 1 | class folder '.*bad/3': expected at least one image | $O/e.json | dfq eval --model $M --data $T/bad --preset fashion-mnist --json $O/e.json
class_folder_empty_quantize | quantize | --calib-data: a class folder without images | bad_empty_class | 1 | class folder '.*bad/3': expected at least one image | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib-data $T/bad --out $O/q.dfq
jpeg_corrupt_eval          | eval     | --data: a corrupt JPEG          | bad_corrupt_jpeg   | 1 | image '.*bad/3/x\.jpg': expected a decodable | $O/e.json | dfq eval --model $M --data $T/bad --preset fashion-mnist --json $O/e.json
jpeg_corrupt_quantize      | quantize | --calib-data: a corrupt JPEG    | bad_corrupt_jpeg   | 1 | image '.*bad/3/x\.jpg': expected a decodable | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib-data $T/bad --out $O/q.dfq
jpeg_truncated_eval        | eval     | --data: a truncated JPEG        | bad_truncated_jpeg | 1 | image '.*bad/3/x\.jpg': expected a decodable .*truncated JPEG | $O/e.json | dfq eval --model $M --data $T/bad --preset fashion-mnist --json $O/e.json
jpeg_truncated_quantize    | quantize | --calib-data: a truncated JPEG  | bad_truncated_jpeg | 1 | image '.*bad/3/x\.jpg': expected a decodable .*truncated JPEG | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib-data $T/bad --out $O/q.dfq
png_truncated_eval         | eval     | --data: a truncated PNG         | bad_truncated_png  | 1 | image '.*bad/3/x\.png': expected a decodable .*truncated PNG | $O/e.json | dfq eval --model $M --data $T/bad --preset fashion-mnist --json $O/e.json
png_truncated_quantize     | quantize | --calib-data: a truncated PNG   | bad_truncated_png  | 1 | image '.*bad/3/x\.png': expected a decodable .*truncated PNG | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib-data $T/bad --out $O/q.dfq
threads_far_beyond_eval    | eval     | --threads 100000                | data               | 1 | --threads: expected 0 \(all cores\) or 1\.\.[0-9]+ \(this machine has [0-9]+ hardware threads\), found 100000 | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --threads 100000 --json $O/e.json
threads_far_beyond_synth   | synth    | --threads 100000                | -                  | 1 | --threads: expected 0 \(all cores\) or 1\.\.[0-9]+ | $O/s | dfq synth --model $M --preset fashion-mnist --count 2 --iters 1 --threads 100000 --out $O/s
decode_threads_far_beyond  | eval     | --decode-threads 100000         | data               | 1 | --decode-threads: expected 1\.\.[0-9]+, found 100000 | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --decode-threads 100000 --json $O/e.json
image_header_bomb_eval     | eval     | --data: a BMP whose header declares 60000x60000 pixels | bad_bomb_bmp | 1 | image '.*bad/3/x\.bmp': expected a header declaring what its [0-9]+ bytes can hold.*found a header declaring 60000x60000 pixels | $O/e.json | dfq eval --model $M --data $T/bad --preset fashion-mnist --json $O/e.json
png_corrupt_eval           | eval     | --data: a PNG with a damaged chunk | bad_corrupt_png | 1 | image '.*bad/3/x\.png': expected a decodable | $O/e.json | dfq eval --model $M --data $T/bad --preset fashion-mnist --json $O/e.json
image_zero_byte_eval       | eval     | --data: a 0-byte .png           | bad_zero_image     | 1 | image '.*bad/3/x\.png': expected a decodable .*found an empty \(0-byte\) file | $O/e.json | dfq eval --model $M --data $T/bad --preset fashion-mnist --json $O/e.json
image_zero_byte_quantize   | quantize | --calib-data: a 0-byte .png     | bad_zero_image     | 1 | image '.*bad/3/x\.png': expected a decodable .*0-byte | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib-data $T/bad --out $O/q.dfq
non_image_file_eval        | eval     | --data: notes.txt in a class folder | bad_text_file  | 1 | file '.*bad/3/notes\.txt': expected an image named | $O/e.json | dfq eval --model $M --data $T/bad --preset fashion-mnist --json $O/e.json
non_image_file_quantize    | quantize | --calib-data: notes.txt in a class folder | bad_text_file | 1 | file '.*bad/3/notes\.txt': expected an image named | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib-data $T/bad --out $O/q.dfq
image_named_png_is_text    | eval     | --data: a text file named .png  | bad_fake_png       | 1 | image '.*bad/3/x\.png': expected a decodable .*no JPEG, PNG or BMP signature | $O/e.json | dfq eval --model $M --data $T/bad --preset fashion-mnist --json $O/e.json
image_rgb_for_gray_eval    | eval     | --data: an RGB PNG, 1-channel model | bad_rgb_image  | 1 | image '.*bad/3/x\.png': expected a 1-channel \(grayscale\) image, found 3 channels | $O/e.json | dfq eval --model $M --data $T/bad --preset fashion-mnist --json $O/e.json
image_rgb_for_gray_quantize | quantize | --calib-data: an RGB PNG, 1-channel model | bad_rgb_image | 1 | image '.*bad/3/x\.png': expected a 1-channel \(grayscale\) image, found 3 channels | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib-data $T/bad --out $O/q.dfq
image_rgba_for_gray_eval   | eval     | --data: an RGBA PNG, 1-channel model | bad_rgba_image | 1 | image '.*bad/3/x\.png': expected a 1-channel \(grayscale\) image, found 4 channels | $O/e.json | dfq eval --model $M --data $T/bad --preset fashion-mnist --json $O/e.json
image_wrong_size_eval      | eval     | --data: one 32x32 image among 28x28 | bad_big_image  | 1 | image '.*bad/3/x\.png': expected 28x28 .*found 32x32 | $O/e.json | dfq eval --model $M --data $T/bad --preset fashion-mnist --json $O/e.json
skip_bad_eval_accepts      | eval     | --data: corrupt, RGB and text files with --skip-bad (accepted) | bad_mixed | 0 | images +20 \(2 unreadable skipped, 1 non-image | - | dfq eval --model $M --data $T/bad --preset fashion-mnist --skip-bad --quiet --json $O/e.json
skip_bad_nothing_readable  | eval     | --data: only unreadable images, with --skip-bad | all_bad_data | 1 | data folder '.*allbad': expected at least one readable image, found none \(10 unreadable skipped | $O/e.json | dfq eval --model $M --data $T/allbad --preset fashion-mnist --skip-bad --quiet --json $O/e.json
# --- options -------------------------------------------------------------------------------------------------------------
wbits_1                    | quantize | --wbits 1                       | -                  | 1 | --wbits: expected a bit width from 2 to 8, found 1 | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --wbits 1 --out $O/q.dfq
wbits_9                    | quantize | --wbits 9                       | -                  | 1 | --wbits: expected a bit width from 2 to 8, found 9 | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --wbits 9 --out $O/q.dfq
abits_0                    | quantize | --abits 0                       | -                  | 1 | --abits: expected a bit width from 2 to 8, found 0 | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --abits 0 --out $O/q.dfq
abits_16                   | quantize | --abits 16                      | -                  | 1 | --abits: expected a bit width from 2 to 8, found 16 | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --abits 16 --out $O/q.dfq
wbits_not_a_number         | quantize | --wbits four                    | -                  | 1 | four.*--wbits.*invalid | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --wbits four --out $O/q.dfq
first_last_bits_9          | quantize | --first-last-bits 9             | -                  | 1 | --first-last-bits: expected a bit width from 2 to 8, found 9 | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --first-last-bits 9 --out $O/q.dfq
candidate_bits_9           | quantize | --candidate-bits 4,9            | -                  | 1 | --candidate-bits: expected a bit width from 2 to 8, found 9 | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --size-budget 4 --candidate-bits 4,9 --out $O/q.dfq
sensitivity_unknown        | quantize | --sensitivity context           | -                  | 1 | --sensitivity: expected one of isolated, reconstructed, in-context, found "context" | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --size-budget 4 --sensitivity context --out $O/q.dfq
sensitivity_uniform        | quantize | --sensitivity without a budget  | -                  | 1 | --sensitivity: expected --size-budget or --bops-budget, found neither | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --wbits 4 --sensitivity in-context --out $O/q.dfq
preset_unknown_eval        | eval     | --preset mnist                  | data               | 1 | preset 'mnist': expected one of cifar, imagenet, fashion-mnist | $O/e.json | dfq eval --model $M --data $D --preset mnist --json $O/e.json
preset_unknown_info        | info     | --preset mnist                  | -                  | 1 | preset 'mnist': expected one of | - | dfq info --model $M --preset mnist
preset_unknown_synth       | synth    | --preset mnist                  | -                  | 1 | preset 'mnist': expected one of | $O/s | dfq synth --model $M --preset mnist --out $O/s
preset_unknown_quantize    | quantize | --preset mnist                  | -                  | 1 | preset 'mnist': expected one of | $O/q.dfq | dfq quantize --model $M --preset mnist --out $O/q.dfq
preset_channels_mismatch   | eval     | --preset cifar on a 1-channel model | data           | 1 | --preset cifar: expected a preset or --mean/--std for the model's 1 input channel | $O/e.json | dfq eval --model $M --data $D --preset cifar --json $O/e.json
resize_negative            | eval     | --resize -5                     | data               | 1 | --resize: expected a value >= 0, found -5 | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --resize -5 --json $O/e.json
crop_negative              | synth    | --crop -1                       | -                  | 1 | --crop: expected a value >= 0, found -1 | $O/s | dfq synth --model $M --preset fashion-mnist --crop -1 --out $O/s
std_zero                   | quantize | --std 0                         | -                  | 1 | --std: expected values > 0 | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --std 0 --out $O/q.dfq
# counts: 0 means "all" only for --limit and --threads (documented in --help); every other count must be >= 1
eval_batch_0               | eval     | --batch 0                       | data               | 1 | --batch: expected a value >= 1, found 0 | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --batch 0 --json $O/e.json
eval_batch_negative        | eval     | --batch -3                      | data               | 1 | --batch: expected a value >= 1, found -3 | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --batch -3 --json $O/e.json
eval_limit_negative        | eval     | --limit -1                      | data               | 1 | --limit: expected a value >= 0, found -1 | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --limit -1 --json $O/e.json
eval_limit_0_is_all        | eval     | --limit 0 means all (accepted)  | data               | 0 | images +20 | - | dfq eval --model $M --data $D --preset fashion-mnist --limit 0 --quiet
eval_threads_negative      | eval     | --threads -2                    | data               | 1 | --threads: expected a value >= 0, found -2 | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --threads -2 --json $O/e.json
eval_decode_threads_0      | eval     | --decode-threads 0              | data               | 1 | --decode-threads: expected a value >= 1, found 0 | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --decode-threads 0 --json $O/e.json
info_threads_negative      | info     | --threads -1                    | -                  | 1 | --threads: expected a value >= 0, found -1 | - | dfq info --model $M --threads -1
synth_count_0              | synth    | --count 0                       | -                  | 1 | --count: expected a value >= 1, found 0 | $O/s | dfq synth --model $M --preset fashion-mnist --count 0 --out $O/s
synth_count_negative       | synth    | --count -5                      | -                  | 1 | --count: expected a value >= 1, found -5 | $O/s | dfq synth --model $M --preset fashion-mnist --count -5 --out $O/s
synth_batch_0              | synth    | --batch 0                       | -                  | 1 | --batch: expected a value >= 1, found 0 | $O/s | dfq synth --model $M --preset fashion-mnist --batch 0 --out $O/s
synth_iters_0              | synth    | --iters 0                       | -                  | 1 | --iters: expected a value >= 1, found 0 | $O/s | dfq synth --model $M --preset fashion-mnist --iters 0 --out $O/s
synth_latent_0             | synth    | --latent 0                      | -                  | 1 | --latent: expected a value >= 1, found 0 | $O/s | dfq synth --model $M --preset fashion-mnist --method generator --latent 0 --out $O/s
synth_jitter_negative      | synth    | --jitter -1                     | -                  | 1 | --jitter: expected a value >= 0, found -1 | $O/s | dfq synth --model $M --preset fashion-mnist --jitter -1 --out $O/s
synth_threads_negative     | synth    | --threads -1                    | -                  | 1 | --threads: expected a value >= 0, found -1 | $O/s | dfq synth --model $M --preset fashion-mnist --threads -1 --out $O/s
synth_lr_negative          | synth    | --lr -0.1                       | -                  | 1 | --lr: expected a positive learning rate | $O/s | dfq synth --model $M --preset fashion-mnist --lr -0.1 --out $O/s
synth_weight_negative      | synth    | --tv-weight -1                  | -                  | 1 | --tv-weight: expected a finite value >= 0, found -1 | $O/s | dfq synth --model $M --preset fashion-mnist --tv-weight -1 --out $O/s
quantize_calib_count_0     | quantize | --calib-count 0                 | -                  | 1 | --calib-count: expected a value >= 1, found 0 | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib-count 0 --out $O/q.dfq
quantize_synth_iters_0     | quantize | --synth-iters 0                 | -                  | 1 | --synth-iters: expected a value >= 1, found 0 | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --synth-iters 0 --out $O/q.dfq
quantize_reconstruct_iters_0 | quantize | --reconstruct-iters 0         | -                  | 1 | --reconstruct-iters: expected a value >= 1, found 0 | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --reconstruct-iters 0 --out $O/q.dfq
quantize_residual_layers_negative | quantize | --residual-layers -1   | -                  | 1 | --residual-layers: expected 0 or more layers, found -1 | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --residual-layers -1 --out $O/q.dfq
quantize_residual_budget_2 | quantize | --residual-budget 2             | -                  | 1 | --residual-budget: expected a fraction of the model's weight bits in \[0, 1\] | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --residual-budget 2 --out $O/q.dfq
quantize_size_budget_negative | quantize | --size-budget -1            | -                  | 1 | --size-budget: expected a finite value >= 0, found -1 | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --size-budget -1 --out $O/q.dfq
quantize_threads_negative  | quantize | --threads -1                    | -                  | 1 | --threads: expected a value >= 0, found -1 | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --threads -1 --out $O/q.dfq
quantize_percentile_0      | quantize | --percentile 0                  | -                  | 1 | --percentile: expected a value in \(0, 100\] | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --percentile 0 --out $O/q.dfq
# contradictory options (a sample; cli_test.sh has more)
eval_model_and_qmodel      | eval     | --model with --qmodel           | data qmodel        | 1 | expected exactly one of --model \(FP32\) and --qmodel \(quantized\), found both | $O/e.json | dfq eval --model $M --qmodel $T/q.dfq --data $D --preset fashion-mnist --json $O/e.json
eval_engine_without_qmodel | eval     | --engine with --model           | data               | 1 | --engine: expected --qmodel | $O/e.json | dfq eval --model $M --engine simulated --data $D --preset fashion-mnist --json $O/e.json
eval_no_fold_bn_qmodel     | eval     | --no-fold-bn with --qmodel      | data qmodel        | 1 | --no-fold-bn: expected --model | $O/e.json | dfq eval --qmodel $T/q.dfq --no-fold-bn --data $D --preset fashion-mnist --json $O/e.json
info_preset_and_input_size | info     | --preset with --input-size      | -                  | 1 | --preset/--input-size: expected at most one of them, found both | - | dfq info --model $M --preset fashion-mnist --input-size 28x28
synth_latent_with_direct   | synth    | --latent with --method direct   | -                  | 1 | --latent: expected an option of --method generator | $O/s | dfq synth --model $M --preset fashion-mnist --method direct --latent 64 --out $O/s
synth_load_and_save_generator | synth | --load-generator with --save-generator | text        | 1 | --save-generator: expected a generator to train.*--load-generator | $O/s | dfq synth --model $M --preset fashion-mnist --method generator --load-generator $T/text.pt --save-generator $O/g.pt --out $O/s
synth_json_inside_out      | synth    | --json inside --out             | -                  | 1 | --json '.*': expected a path outside --out | $O/s | dfq synth --model $M --preset fashion-mnist --out $O/s --json $O/s/s.json
quantize_calib_and_calib_data | quantize | --calib with --calib-data    | data               | 1 | --calib-data: expected either --calib or --calib-data, found both | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib $D --calib-data $D --out $O/q.dfq
quantize_synth_iters_real_data | quantize | --synth-iters with --calib-data | data          | 1 | --synth-iters: expected --calib synthetic | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib-data $D --synth-iters 10 --out $O/q.dfq
quantize_input_size_real_data | quantize | --input-size with --calib-data | data           | 1 | --input-size: expected --calib synthetic | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib-data $D --input-size 28x28 --out $O/q.dfq
quantize_json_is_out       | quantize | --json the same file as --out   | -                  | 1 | --json '.*': expected a file other than --out | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --out $O/q.dfq --json $O/q.dfq
quantize_residual_both     | quantize | --residual-layers with --residual-budget | -         | 1 | expected either --residual-layers or --residual-budget, found both | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --residual-layers 1 --residual-budget 0.1 --out $O/q.dfq
quantize_out_is_model      | quantize | --out the model file itself (kept intact) | model_copy | 1 | --out '.*m\.pt': expected a file other than --model, found the same file | - | dfq quantize --model $O/m.pt --preset fashion-mnist --out $O/m.pt
eval_json_is_model         | eval     | --json the model file itself (kept intact) | data model_copy | 1 | --json '.*m\.pt': expected a file other than --model, found the same file | - | dfq eval --model $O/m.pt --data $D --preset fashion-mnist --json $O/m.pt
eval_save_outputs_is_model | eval     | --save-outputs the model file itself (kept intact) | data model_copy | 1 | --save-outputs '.*m\.pt': expected a file other than --model, found the same file | - | dfq eval --model $O/m.pt --data $D --preset fashion-mnist --save-outputs $O/m.pt
eval_predictions_is_json   | eval     | --predictions the same file as --json | data         | 1 | --predictions '.*e\.json': expected a file other than --json, found the same file | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --json $O/e.json --predictions $O/e.json
eval_save_inputs_index_is_json | eval | --save-inputs FILE whose FILE.json is --json | data        | 1 | --save-inputs '.*x\.json': expected a file other than --json, found the same file | $O/x $O/x.json | dfq eval --model $M --data $D --preset fashion-mnist --json $O/x.json --save-inputs $O/x
synth_json_is_model        | synth    | --json the model file itself (kept intact) | model_copy | 1 | --json '.*m\.pt': expected a file other than --model, found the same file | $O/s | dfq synth --model $O/m.pt --preset fashion-mnist --out $O/s --json $O/m.pt
# --- .dfq artifact and other saved inputs ---------------------------------------------------------------------------------
qmodel_missing             | eval     | --qmodel: no such file          | data               | 1 | quantized model '.*missing\.dfq': expected a readable file | $O/e.json | dfq eval --qmodel $T/missing.dfq --data $D --preset fashion-mnist --json $O/e.json
qmodel_not_dfq             | eval     | --qmodel: a text file           | data text          | 1 | quantized model '.*text\.pt': expected a \.dfq file \(magic DFQMODEL\), found other content | $O/e.json | dfq eval --qmodel $T/text.pt --data $D --preset fashion-mnist --json $O/e.json
qmodel_is_torchscript      | eval     | --qmodel: a TorchScript model   | data               | 1 | quantized model '.*fashion_cnn\.pt': expected a \.dfq file | $O/e.json | dfq eval --qmodel $M --data $D --preset fashion-mnist --json $O/e.json
qmodel_zero_byte           | eval     | --qmodel: a 0-byte file         | data zero_qmodel   | 1 | quantized model '.*zero\.dfq': expected a \.dfq file | $O/e.json | dfq eval --qmodel $T/zero.dfq --data $D --preset fashion-mnist --json $O/e.json
qmodel_truncated           | eval     | --qmodel: first half of a .dfq  | data truncated_qmodel | 1 | quantized model '.*cut\.dfq': expected an intact file \(CRC-32 match\), found a mismatch: the file is truncated or corrupted | $O/e.json | dfq eval --qmodel $T/cut.dfq --data $D --preset fashion-mnist --json $O/e.json
qmodel_truncated_simulated | eval     | --qmodel: a .dfq missing its last byte, simulated engine | data truncated_qmodel | 1 | quantized model '.*cut1\.dfq': expected an intact file \(CRC-32 match\) | $O/e.json | dfq eval --qmodel $T/cut1.dfq --engine simulated --data $D --preset fashion-mnist --json $O/e.json
qmodel_corrupted           | eval     | --qmodel: one byte flipped      | data corrupted_qmodel | 1 | quantized model '.*flip\.dfq': expected an intact file \(CRC-32 match\), found a mismatch | $O/e.json | dfq eval --qmodel $T/flip.dfq --data $D --preset fashion-mnist --json $O/e.json
qmodel_wrong_version       | eval     | --qmodel: format version 2      | data old_qmodel    | 1 | quantized model '.*old\.dfq': expected format version [0-9]+ to [0-9]+, found version 2 \(written by an older dfq | $O/e.json | dfq eval --qmodel $T/old.dfq --data $D --preset fashion-mnist --json $O/e.json
qmodel_future_version      | eval     | --qmodel: format version 99     | data new_qmodel    | 1 | quantized model '.*new\.dfq': expected format version [0-9]+ to [0-9]+, found version 99 | $O/e.json | dfq eval --qmodel $T/new.dfq --data $D --preset fashion-mnist --json $O/e.json
calib_set_corrupt          | quantize | --calib: a synth folder whose images.pt is not a pickle | bad_synth_set | 1 | synthetic set '.*images\.pt': expected a pickled | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib $T/set --out $O/q.dfq
calib_set_zero_byte        | quantize | --calib: a 0-byte images.pt     | zero_synth_set     | 1 | synthetic set '.*images\.pt': expected a pickled | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib $T/set --out $O/q.dfq
calib_set_wrong_model      | quantize | --calib: a set of 3-channel 8x8 images for a 1-channel model | rgb_synth_set | 1 | synthetic set '.*rgbset/images\.pt': expected images with the model's 1 input channel\(s\), found 3 channel\(s\) | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib $T/rgbset --out $O/q.dfq
generator_file_corrupt     | synth    | --load-generator: a text file   | text               | 1 | generator file '.*text\.pt': expected a generator saved by dfq | $O/s | dfq synth --model $M --preset fashion-mnist --method generator --count 4 --load-generator $T/text.pt --out $O/s
# --- outputs that cannot be written --------------------------------------------------------------------------------------
out_parent_is_file_synth   | synth    | --out under a regular file      | blocker            | 1 | --out '.*blocker/s': expected a writable location | $O/s | dfq synth --model $M --preset fashion-mnist --count 2 --batch 2 --iters 1 --out $B/s
out_is_file_synth          | synth    | --out an existing file          | text               | 1 | --out '.*text\.pt': expected a directory, found an existing file | - | dfq synth --model $M --preset fashion-mnist --count 2 --iters 1 --out $T/text.pt
out_foreign_dir_synth      | synth    | --out a directory with other files | foreign_out     | 1 | --out '.*mine': expected a new directory or an earlier dfq synth output.*, found other files \(notes\.txt\) | - | dfq synth --model $M --preset fashion-mnist --count 2 --batch 2 --iters 1 --out $O/mine
json_not_writable_synth    | synth    | --json under a regular file     | blocker            | 1 | --json '.*blocker/s\.json': expected a writable location | $O/s | dfq synth --model $M --preset fashion-mnist --count 2 --batch 2 --iters 1 --out $O/s --json $B/s.json
save_generator_not_writable | synth   | --save-generator under a regular file | blocker      | 1 | --save-generator '.*blocker/g\.pt': expected a writable location | $O/s | dfq synth --model $M --preset fashion-mnist --method generator --count 2 --batch 2 --iters 1 --out $O/s --save-generator $B/g.pt
out_not_writable_quantize  | quantize | --out under a regular file      | blocker data       | 1 | --out '.*blocker/q\.dfq': expected a writable location | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib-data $D --reconstruct none --out $B/q.dfq
json_not_writable_quantize | quantize | --json under a regular file (--out fine) | blocker data | 1 | --json '.*blocker/q\.json': expected a writable location | $O/q.dfq | dfq quantize --model $M --preset fashion-mnist --calib-data $D --reconstruct none --out $O/q.dfq --json $B/q.json
json_not_writable_eval     | eval     | --json under a regular file     | blocker data       | 1 | --json '.*blocker/e\.json': expected a writable location | - | dfq eval --model $M --data $D --preset fashion-mnist --json $B/e.json
out_is_directory_quantize  | quantize | --out an existing directory     | -                  | 1 | --out '.*out': expected a file name, found an existing directory | - | dfq quantize --model $M --preset fashion-mnist --out $O
json_is_directory_eval     | eval     | --json an existing directory    | data               | 1 | --json '.*out': expected a file name, found an existing directory | - | dfq eval --model $M --data $D --preset fashion-mnist --json $O
predictions_missing_dir    | eval     | --predictions into a missing directory | data             | 1 | --predictions '.*none/p\.csv': expected a writable location, found no directory | $T/none/p.csv $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --json $O/e.json --predictions $T/none/p.csv
save_inputs_missing_dir    | eval     | --save-inputs into a missing directory (neither FILE nor FILE.json) | data | 1 | --save-inputs '.*none/x\.f32': expected a writable location, found no directory | $T/none/x.f32 $T/none/x.f32.json $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --json $O/e.json --save-inputs $T/none/x.f32
readonly_fs_synth          | synth    | --out on a read-only tmpfs      | -                  | 1 | --out '.*mnt/s': expected a writable location, found .*[Rr]ead-only file system | $O/s | on_tmpfs 1m ro dfq synth --model $M --preset fashion-mnist --count 2 --batch 2 --iters 1 --out $T/mnt/s
readonly_fs_quantize       | quantize | --out on a read-only tmpfs      | data               | 1 | --out '.*mnt/q\.dfq': expected a writable location, found .*[Rr]ead-only file system | $O/q.dfq | on_tmpfs 1m ro dfq quantize --model $M --preset fashion-mnist --calib-data $D --reconstruct none --out $T/mnt/q.dfq
readonly_fs_eval           | eval     | --json on a read-only tmpfs     | data               | 1 | --json '.*mnt/e\.json': expected a writable location, found .*[Rr]ead-only file system | - | on_tmpfs 1m ro dfq eval --model $M --data $D --preset fashion-mnist --json $T/mnt/e.json
# --- disk full while writing ---------------------------------------------------------------------------------------------
disk_full_synth            | synth    | --out: file size limit 16 KiB (images.pt is 62 KiB) | - | 1 | images\.pt': expected [0-9]+ bytes written, found .*File too large | $O/s | limit_fsize 16 dfq synth --model $M --preset fashion-mnist --count 20 --batch 20 --iters 1 --out $O/s --dump-png
disk_full_synth_keeps_previous | synth | --out: file size limit, over an earlier output (kept intact) | previous_synth | 1 | images\.pt': expected [0-9]+ bytes written, found .*File too large | - | limit_fsize 16 dfq synth --model $M --preset fashion-mnist --count 20 --batch 20 --iters 1 --out $O/prev --dump-png
disk_full_synth_png_tmpfs  | synth    | --out on a 96 KiB tmpfs (images.pt fits, the PNGs do not) | - | 1 | PNG folder '.*png': expected writable image files | $O/s | on_tmpfs 96k rw dfq synth --model $M --preset fashion-mnist --count 20 --batch 20 --iters 1 --out $T/mnt/s --dump-png
disk_full_synth_json       | synth    | --json on a full tmpfs          | -                  | 1 | --json '.*mnt/s\.json': expected a writable location, found .*No space left on device | $O/s | on_tmpfs 64k full dfq synth --model $M --preset fashion-mnist --count 2 --batch 2 --iters 1 --out $O/s --json $T/mnt/s.json
disk_full_save_generator   | synth    | --save-generator: file size limit 64 KiB | -         | 1 | g\.pt': expected [0-9]+ bytes written, found .*File too large | $O/s | limit_fsize 64 dfq synth --model $M --preset fashion-mnist --method generator --count 2 --batch 2 --iters 1 --out $O/s --save-generator $O/g.pt
disk_full_quantize_out     | quantize | --out: file size limit 4 KiB    | data               | 1 | q\.dfq': expected [0-9]+ bytes written, found .*File too large | $O/q.dfq | limit_fsize 4 dfq quantize --model $M --preset fashion-mnist --calib-data $D --reconstruct none --out $O/q.dfq
disk_full_quantize_out_tmpfs | quantize | --out on a 16 KiB tmpfs       | data               | 1 | q\.dfq': expected [0-9]+ bytes written, found .*No space left on device | - | on_tmpfs 16k rw dfq quantize --model $M --preset fashion-mnist --calib-data $D --reconstruct none --out $T/mnt/q.dfq
disk_full_quantize_json    | quantize | --json on a full tmpfs (--out fine) | data           | 1 | --json '.*mnt/q\.json': expected a writable location, found .*No space left on device | $O/q.dfq | on_tmpfs 64k full dfq quantize --model $M --preset fashion-mnist --calib-data $D --reconstruct none --out $O/q.dfq --json $T/mnt/q.json
disk_full_eval_json        | eval     | --json: file size limit 0 (refused before evaluating) | data | 1 | --json '.*e\.json': expected a writable location, found File too large | $O/e.json | limit_fsize 0 dfq eval --model $M --data $D --preset fashion-mnist --quiet --json $O/e.json
disk_full_eval_json_midway | eval     | --json: file size limit 1 KiB (the integer engine's JSON is 1.6 KiB) | data qmodel | 1 | e\.json': expected [0-9]+ bytes written, found 1024 \(File too large\) | $O/e.json | limit_fsize 1 dfq eval --qmodel $T/q.dfq --data $D --preset fashion-mnist --quiet --json $O/e.json
disk_full_eval_save_inputs | eval     | --save-inputs: file size limit 16 KiB (the inputs are 61 KiB): no output at all | data | 1 | x\.f32': expected 62720 bytes written, found .*File too large | $O/x.f32 $O/x.f32.json $O/e.json $O/p.csv | limit_fsize 16 dfq eval --model $M --data $D --preset fashion-mnist --quiet --json $O/e.json --predictions $O/p.csv --save-inputs $O/x.f32
disk_full_eval_json_tmpfs  | eval     | --json on a full tmpfs          | data               | 1 | --json '.*mnt/e\.json': expected a writable location, found .*No space left on device | - | on_tmpfs 64k full dfq eval --model $M --data $D --preset fashion-mnist --quiet --json $T/mnt/e.json
# --- scale-out by shards (dfq synth/eval --shard I/N, --merge; shard folders and results live in $O, so the snapshot proves a failed merge left them intact)
synth_shard_out_of_range   | synth    | --shard 3/3                     | -                  | 1 | --shard: expected I/N with 0 <= I < N.*found '3/3' | $O/s | dfq synth --model $M --preset fashion-mnist --count 4 --batch 2 --iters 1 --shard 3/3 --out $O/s
synth_shard_negative       | synth    | --shard -1/2                    | -                  | 1 | --shard: expected I/N with 0 <= I < N.*found '-1/2' | $O/s | dfq synth --model $M --preset fashion-mnist --count 4 --batch 2 --iters 1 --shard -1/2 --out $O/s
synth_shard_zero_shards    | synth    | --shard 1/0                     | -                  | 1 | --shard: expected I/N with 0 <= I < N.*found '1/0' | $O/s | dfq synth --model $M --preset fashion-mnist --count 4 --batch 2 --iters 1 --shard 1/0 --out $O/s
synth_shard_garbage        | synth    | --shard half                    | -                  | 1 | --shard: expected I/N with 0 <= I < N.*found 'half' | $O/s | dfq synth --model $M --preset fashion-mnist --count 4 --batch 2 --iters 1 --shard half --out $O/s
synth_shard_beyond_batches | synth    | --shard 0/3 of a run of 2 batches | -                | 1 | --shard 0/3: expected at most as many shards as batches \(2 of --batch 2 for --count 4\), found 3 shards | $O/s | dfq synth --model $M --preset fashion-mnist --count 4 --batch 2 --iters 1 --shard 0/3 --out $O/s
synth_shard_generator      | synth    | --shard with --method generator | -                  | 1 | --shard: expected --method direct \(the generator is one model trained on every image | $O/s | dfq synth --model $M --preset fashion-mnist --method generator --count 4 --batch 2 --iters 1 --shard 0/2 --out $O/s
synth_shard_dump_png       | synth    | --dump-png with --shard         | -                  | 1 | --dump-png: expected the merged set | $O/s | dfq synth --model $M --preset fashion-mnist --count 4 --batch 2 --iters 1 --shard 0/2 --dump-png --out $O/s
synth_merge_accepts        | synth    | --merge of both shards, any order (accepted) | synth_shards | 0 | wrote .*m/images\.pt | - | dfq synth --merge $O/sh1 $O/sh0 --out $O/m --quiet
synth_merge_missing_shard  | synth    | --merge: shard 1/2 missing      | synth_shards       | 1 | --merge: expected all 2 shards of the run, found 1 \(no shard 1 of 2\) | $O/m | dfq synth --merge $O/sh0 --out $O/m
synth_merge_duplicate_shard | synth   | --merge: shard 1/2 twice        | synth_shards       | 1 | shard '.*sh1b': expected each shard of the run once, found shard 1/2 again \(also shard '.*sh1'\) | $O/m | dfq synth --merge $O/sh0 $O/sh1 $O/sh1b --out $O/m
synth_merge_other_seed     | synth    | --merge: shards of two runs (seeds 0 and 1) | synth_shards synth_shard_seed1 | 1 | shard '.*seed1': expected the run of shard '.*sh0' \(seed 0\), found seed 1 | $O/m | dfq synth --merge $O/sh0 $O/seed1 --out $O/m
synth_merge_other_model    | synth    | --merge: shards of two models   | synth_shards synth_shard_other_model | 1 | shard '.*othermodel': expected the run of shard '.*sh0' \(model_sha256 "[0-9a-f]{64}"\), found model_sha256 "[0-9a-f]{64}" | $O/m | dfq synth --merge $O/sh0 $O/othermodel --out $O/m
synth_merge_not_a_shard    | synth    | --merge: an unsharded synth output | synth_shards previous_synth | 1 | shard '.*prev': expected a folder written by dfq synth --shard \(with shard\.json\), found no readable shard\.json | $O/m | dfq synth --merge $O/sh0 $O/prev --out $O/m
synth_merge_wrong_model    | synth    | --merge --model: another model file | synth_shards   | 1 | model '.*conv_bn\.pt': expected the model the shards were synthesized from \(SHA-256 [0-9a-f]{64}\), found a file with SHA-256 | $O/m | dfq synth --merge $O/sh0 $O/sh1 --model $models/conv_bn.pt --out $O/m
synth_merge_out_is_shard   | synth    | --merge --out: one of the shards (kept intact) | synth_shards | 1 | --out '.*sh1': expected a folder apart from the shards being merged, found shard '.*sh1' | - | dfq synth --merge $O/sh0 $O/sh1 --out $O/sh1
synth_merge_with_option    | synth    | --merge with --seed             | synth_shards       | 1 | --seed: expected an option of a single run \(--merge takes the synthesis options from the shards\) | $O/m | dfq synth --merge $O/sh0 $O/sh1 --seed 1 --out $O/m
synth_merge_disk_full      | synth    | --merge --out: file size limit 4 KiB (images.pt is 13 KiB) | synth_shards | 1 | images\.pt': expected [0-9]+ bytes written, found .*File too large | $O/m | limit_fsize 4 dfq synth --merge $O/sh0 $O/sh1 --out $O/m
eval_shard_out_of_range    | eval     | --shard 2/2                     | data               | 1 | --shard: expected I/N with 0 <= I < N.*found '2/2' | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --shard 2/2 --json $O/e.json
eval_shard_negative        | eval     | --shard -1/2                    | data               | 1 | --shard: expected I/N with 0 <= I < N.*found '-1/2' | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --shard -1/2 --json $O/e.json
eval_shard_zero_shards     | eval     | --shard 0/0                     | data               | 1 | --shard: expected I/N with 0 <= I < N.*found '0/0' | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --shard 0/0 --json $O/e.json
eval_shard_garbage         | eval     | --shard 1of2                    | data               | 1 | --shard: expected I/N with 0 <= I < N.*found '1of2' | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --shard 1of2 --json $O/e.json
eval_shard_without_json    | eval     | --shard without --json          | data               | 1 | --shard: expected --json FILE \(the shard result dfq eval --merge reads\), found no --json | - | dfq eval --model $M --data $D --preset fashion-mnist --shard 0/2
eval_shard_beyond_images   | eval     | --shard 0/3 of --limit 2        | data               | 1 | --shard 0/3: expected at most as many shards as images \(2\), found 3 shards | $O/e.json | dfq eval --model $M --data $D --preset fashion-mnist --limit 2 --shard 0/3 --json $O/e.json
eval_merge_accepts         | eval     | --merge of both shards, any order (accepted) | eval_shards | 0 | top-1 +[0-9.]+ % \([0-9]+/20\) | - | dfq eval --merge $O/e1.json $O/e0.json --json $O/m.json --predictions $O/m.csv
eval_merge_missing_shard   | eval     | --merge: shard 1/2 missing      | eval_shards        | 1 | --merge: expected all 2 shards of the run, found 1 \(no shard 1 of 2\) | $O/m.json $O/m.csv | dfq eval --merge $O/e0.json --json $O/m.json --predictions $O/m.csv
eval_merge_duplicate_shard | eval     | --merge: shard 1/2 twice        | eval_shards        | 1 | shard result '.*e1b\.json': expected each shard of the run once, found shard 1/2 again \(also shard result '.*e1\.json'\) | $O/m.json | dfq eval --merge $O/e0.json $O/e1.json $O/e1b.json --json $O/m.json
eval_merge_other_model     | eval     | --merge: shards of two models (FP32, quantized) | eval_shards eval_shard_qmodel | 1 | shard result '.*q1\.json': expected the run of shard result '.*e0\.json' \(model_sha256 "[0-9a-f]{64}"\), found model_sha256 "[0-9a-f]{64}" | $O/m.json | dfq eval --merge $O/e0.json $O/q1.json --json $O/m.json
eval_merge_other_data      | eval     | --merge: shards of a folder and of its copy (new file times) | eval_shards eval_shard_copied_data | 1 | shard result '.*d1\.json': expected the run of shard result '.*e0\.json' \(data_fingerprint "[0-9a-f]{64}"\), found data_fingerprint | $O/m.json | dfq eval --merge $O/e0.json $O/d1.json --json $O/m.json
eval_merge_other_preprocessing | eval | --merge: shards with different --mean | eval_shards eval_shard_other_mean | 1 | shard result '.*mean1\.json': expected the run of shard result '.*e0\.json' \(preprocess .*\), found preprocess | $O/m.json | dfq eval --merge $O/e0.json $O/mean1.json --json $O/m.json
eval_merge_not_a_shard     | eval     | --merge: an unsharded --json    | eval_shards eval_plain_json | 1 | shard result '.*plain\.json': expected the JSON dfq eval --shard --json writes, found .*key 'shard' not found | $O/m.json | dfq eval --merge $O/e0.json $O/plain.json --json $O/m.json
eval_merge_json_is_shard   | eval     | --merge --json: one of the shard results (kept intact) | eval_shards | 1 | --json '.*e0\.json': expected a file other than --merge, found the same file | - | dfq eval --merge $O/e0.json $O/e1.json --json $O/e0.json
eval_merge_with_option     | eval     | --merge with --data             | eval_shards        | 1 | --data: expected an option of a single run \(--merge takes the evaluation options from the shard results\) | $O/m.json | dfq eval --merge $O/e0.json $O/e1.json --data $D --json $O/m.json
# --- dfq export ---------------------------------------------------------------------------------------------------------
export_qmodel_corrupted    | export   | --qmodel: one byte flipped      | corrupted_qmodel   | 1 | quantized model '.*flip\.dfq': expected an intact file \(CRC-32 match\) | $O/m.onnx | dfq export --qmodel $T/flip.dfq --out $O/m.onnx
export_qmodel_truncated    | export   | --qmodel: first half of a .dfq  | truncated_qmodel   | 1 | quantized model '.*cut\.dfq': expected an intact file | $O/m.onnx | dfq export --qmodel $T/cut.dfq --out $O/m.onnx
export_out_is_qmodel       | export   | --out: the input .dfq itself    | qmodel             | 1 | --out '.*q\.dfq': expected a file other than --qmodel, found the same file | - | dfq export --qmodel $T/q.dfq --out $T/q.dfq
export_out_unwritable      | export   | --out: under a regular file     | qmodel             | 1 | --out '.*/x\.onnx': expected a writable location | - | dfq export --qmodel $T/q.dfq --out $B/x.onnx
export_opset_18            | export   | --opset 18                      | qmodel             | 1 | --opset: expected 17 or 21, found 18 | $O/m.onnx | dfq export --qmodel $T/q.dfq --out $O/m.onnx --opset 18
export_input_size_too_big  | export   | --input-size 10x10, model takes 8x8 only | fixed_qmodel | 1 | input size 10x10: expected a size the model can take, found .*node 'fc' \(linear\) | $O/m.onnx | dfq export --qmodel $T/fixed.dfq --out $O/m.onnx --input-size 10x10
export_disk_full           | export   | --out: file size limit 16 KiB (the file is ~48 KiB) | qmodel | 1 | m\.onnx': expected [0-9]+ bytes written, found .*File too large | $O/m.onnx | limit_fsize 16 dfq export --qmodel $T/q.dfq --out $O/m.onnx
EOF
}

# ---------------------------------------------------------------- fixtures (each builds into $T)
image() { "$make_image" "$@" >/dev/null || { echo "make_test_image $*: failed" >&2; exit 2; }; }
fx_data() {  # 10 class folders of two 28x28 greyscale PNGs: the embedded model's input
  [ -d "$T/data" ] && return
  for c in 0 1 2 3 4 5 6 7 8 9; do
    mkdir -p "$T/data/$c"
    image "$T/data/$c/a.png" 28 28 1 "$c"
    image "$T/data/$c/b.png" 28 28 1 "$((c + 10))"
  done
}
fx_rgb_data() {  # 5 class folders of 8x8 RGB PNGs for linear.pt (no BN) and fixed_size_linear.pt (5 outputs each)
  for c in 0 1 2 3 4; do mkdir -p "$T/rgb/$c"; image "$T/rgb/$c/a.png" 8 8 3 "$c"; image "$T/rgb/$c/b.png" 8 8 3 "$((c + 5))"; done
}
fx_rgb_big_data() { for c in 0 1 2 3 4; do mkdir -p "$T/rgbbig/$c"; image "$T/rgbbig/$c/a.png" 10 10 3 "$c"; done; }
fx_nine_classes() { mkdir -p "$T/nine"; for c in 0 1 2 3 4 5 6 7 8; do cp -r "$T/data/$c" "$T/nine/$c"; done; }
fx_names9() { seq 0 8 >"$T/names9.txt"; }
fx_all_bad_data() { for c in 0 1 2 3 4 5 6 7 8 9; do mkdir -p "$T/allbad/$c"; echo "not an image" >"$T/allbad/$c/a.png"; done; }
fx_empty_data() { mkdir -p "$T/empty"; }
fx_text() { echo "not a model" >"$T/text.pt"; }
fx_zero_model() { : >"$T/zero.pt"; }
fx_truncated_model() { head -c 4096 "$M" >"$T/cut.pt"; }
fx_unreadable_model() { cp "$M" "$T/m000.pt"; chmod 000 "$T/m000.pt"; }
fx_model_copy() { cp "$M" "$O/m.pt"; }  # in $O, so the snapshot proves a failed run left it intact
fx_blocker() { echo "a regular file" >"$B"; }
fx_foreign_out() { mkdir -p "$O/mine"; echo "keep me" >"$O/mine/notes.txt"; }
# A copy of the good folder with one bad entry in class 3.
bad_folder() { fx_data; rm -rf "$T/bad"; cp -r "$T/data" "$T/bad"; }
fx_bad_empty_class() { bad_folder; rm -f "$T/bad/3/"*; }
fx_bad_corrupt_jpeg() {  # JPEG signature and end marker intact, the segments in between overwritten
  bad_folder; image "$T/bad/3/x.jpg" 28 28 1 7
  local size; size=$(stat -c %s "$T/bad/3/x.jpg")
  head -c $((size - 4)) /dev/zero | tr '\0' '\377' | dd of="$T/bad/3/x.jpg" bs=1 seek=2 conv=notrunc status=none
}
fx_bad_truncated_jpeg() { bad_folder; image "$T/x.jpg" 28 28 1 7; head -c 300 "$T/x.jpg" >"$T/bad/3/x.jpg"; }
fx_bad_truncated_png() { bad_folder; image "$T/x.png" 28 28 1 7; head -c 200 "$T/x.png" >"$T/bad/3/x.png"; }
fx_bad_corrupt_png() {  # signature and IEND intact, the image data damaged (CRC mismatch)
  bad_folder; image "$T/bad/3/x.png" 28 28 1 7
  printf 'garbage!garbage!' | dd of="$T/bad/3/x.png" bs=1 seek=60 conv=notrunc status=none
}
fx_bad_bomb_bmp() {  # a 28x28 grey BMP whose header then declares 60000x60000 pixels
  bad_folder; image "$T/bad/3/x.bmp" 28 28 1 7
  for at in 18 22; do printf '\x60\xea\x00\x00' | dd of="$T/bad/3/x.bmp" bs=1 seek=$at conv=notrunc status=none; done
}
fx_bad_zero_image() { bad_folder; : >"$T/bad/3/x.png"; }
fx_bad_text_file() { bad_folder; echo "notes" >"$T/bad/3/notes.txt"; }
fx_bad_fake_png() { bad_folder; echo "not an image" >"$T/bad/3/x.png"; }
fx_bad_rgb_image() { bad_folder; image "$T/bad/3/x.png" 28 28 3 7; }
fx_bad_rgba_image() { bad_folder; image "$T/bad/3/x.png" 28 28 4 7; }
fx_bad_big_image() { bad_folder; image "$T/bad/3/x.png" 32 32 1 7; }
fx_bad_mixed() { fx_bad_corrupt_jpeg; image "$T/bad/5/x.png" 28 28 3 7; echo "notes" >"$T/bad/7/notes.txt"; }
fx_qmodel() {  # a valid W8A8 artifact of the embedded model, calibrated on the fixture images
  fx_data
  "$dfq_bin" quantize --model "$M" --preset fashion-mnist --calib-data "$T/data" --reconstruct none --quiet \
    --out "$T/q.dfq" >/dev/null || { echo "fixture qmodel: dfq quantize failed" >&2; exit 2; }
}
fx_fixed_qmodel() {  # an artifact of tests/data/models/fixed_size_linear.pt (8x8 RGB inputs only)
  fx_rgb_data
  "$dfq_bin" quantize --model "$models/fixed_size_linear.pt" --calib-data "$T/rgb" --reconstruct none --quiet \
    --out "$T/fixed.dfq" >/dev/null || { echo "fixture fixed_qmodel: dfq quantize failed" >&2; exit 2; }
}
fx_zero_qmodel() { : >"$T/zero.dfq"; }
fx_truncated_qmodel() {
  fx_qmodel; local size; size=$(stat -c %s "$T/q.dfq")
  head -c $((size / 2)) "$T/q.dfq" >"$T/cut.dfq"; head -c $((size - 1)) "$T/q.dfq" >"$T/cut1.dfq"
}
fx_corrupted_qmodel() {  # one byte of the tensor data inverted
  fx_qmodel; local size; size=$(stat -c %s "$T/q.dfq"); cp "$T/q.dfq" "$T/flip.dfq"
  local at=$((size - 100)) byte
  byte=$(od -An -tu1 -j "$at" -N1 "$T/q.dfq" | tr -d ' ')
  printf "\\$(printf '%03o' $((255 - byte)))" | dd of="$T/flip.dfq" bs=1 seek="$at" conv=notrunc status=none
}
set_version() { cp "$T/q.dfq" "$T/$1"; printf "\\$(printf '%03o' "$2")" | dd of="$T/$1" bs=1 seek=8 conv=notrunc status=none; }
fx_old_qmodel() { fx_qmodel; set_version old.dfq 2; }
fx_new_qmodel() { fx_qmodel; set_version new.dfq 99; }
fx_bad_synth_set() { mkdir -p "$T/set"; echo "not a pickle" >"$T/set/images.pt"; }
fx_zero_synth_set() { mkdir -p "$T/set"; : >"$T/set/images.pt"; }
fx_rgb_synth_set() {  # a real synth output, of a 3-channel 8x8 model
  "$dfq_bin" synth --model "$models/conv_bn.pt" --input-size 8x8 --labels none --count 2 --batch 2 --iters 1 \
    --quiet --out "$T/rgbset" >/dev/null || { echo "fixture rgb_synth_set: dfq synth failed" >&2; exit 2; }
}
# synth_shard DIR I/N [options]: a shard of a tiny direct run (4 images, batches of 2).
synth_shard() {
  local dir="$1" shard="$2"; shift 2
  "$dfq_bin" synth --model "$M" --preset fashion-mnist --count 4 --batch 2 --iters 1 --quiet --shard "$shard" \
    --out "$dir" "$@" >/dev/null || { echo "fixture: dfq synth --shard $shard failed" >&2; exit 2; }
}
fx_synth_shards() { synth_shard "$O/sh0" 0/2; synth_shard "$O/sh1" 1/2; cp -r "$O/sh1" "$O/sh1b"; }
fx_synth_shard_seed1() { synth_shard "$O/seed1" 1/2 --seed 1; }
fx_synth_shard_other_model() {  # shard 1/2 of the same count and batches, on a 3-channel 8x8 model
  "$dfq_bin" synth --model "$models/conv_bn.pt" --input-size 8x8 --labels none --count 4 --batch 2 --iters 1 --quiet \
    --shard 1/2 --out "$O/othermodel" >/dev/null || { echo "fixture synth_shard_other_model failed" >&2; exit 2; }
}
# eval_shard FILE I/N [options]: a shard result of the embedded model on the fixture folder (20 images).
eval_shard() {
  local file="$1" shard="$2"; shift 2
  "$dfq_bin" eval --preset fashion-mnist --quiet --shard "$shard" --json "$file" "$@" >/dev/null ||
    { echo "fixture: dfq eval --shard $shard failed" >&2; exit 2; }
}
fx_eval_shards() {
  fx_data; eval_shard "$O/e0.json" 0/2 --model "$M" --data "$D"; eval_shard "$O/e1.json" 1/2 --model "$M" --data "$D"
  cp "$O/e1.json" "$O/e1b.json"
}
fx_eval_shard_qmodel() { fx_qmodel; eval_shard "$O/q1.json" 1/2 --qmodel "$T/q.dfq" --data "$D"; }
fx_eval_shard_copied_data() { cp -r "$D" "$T/copy"; eval_shard "$O/d1.json" 1/2 --model "$M" --data "$T/copy"; }
fx_eval_shard_other_mean() { eval_shard "$O/mean1.json" 1/2 --model "$M" --data "$D" --mean 0.3; }
fx_eval_plain_json() {
  "$dfq_bin" eval --model "$M" --data "$D" --preset fashion-mnist --quiet --json "$O/plain.json" >/dev/null ||
    { echo "fixture eval_plain_json failed" >&2; exit 2; }
}
fx_previous_synth() {  # an earlier, complete synth output in $O/prev, which a failed run must keep
  "$dfq_bin" synth --model "$M" --preset fashion-mnist --count 2 --batch 2 --iters 1 --quiet --dump-png \
    --out "$O/prev" >/dev/null || { echo "fixture previous_synth: dfq synth failed" >&2; exit 2; }
}

# ---------------------------------------------------------------- wrappers used in the arguments column
dfq() { "$dfq_bin" "$@"; }
# limit_fsize KB CMD...: CMD may write files of at most KB KiB. Its stdout and stderr go through pipes to
# processes outside the limit, or a limit of 0 would swallow the error message itself.
limit_fsize() {
  local kb="$1"; shift
  [ "$1" = dfq ] && set -- "$dfq_bin" "${@:2}"
  # LLVM's OpenMP runtime (the clang sanitizer build, tests/fuzz) sizes a /dev/shm registration file
  # to 1 KiB while loading, before main can ignore SIGXFSZ, so a limit of 0 kills it there.
  # (grep reads all of ldd's output: with pipefail, grep -q's early exit would SIGPIPE ldd and fail the test)
  if [ "$kb" -eq 0 ] && ldd "$dfq_bin" 2>/dev/null | grep 'libomp\.so' >/dev/null; then
    skip_case "a file-size limit of 0 stops LLVM's OpenMP runtime (sanitizer build) while it loads"; return 0
  fi
  { (ulimit -f "$kb" && exec "$@") 2>&1 >&3 3>&- | cat >&2; } 3>&1 | cat
}
skip_case() { echo "$1" >"$T/skip"; return 0; }
# on_tmpfs SIZE ro|rw|full CMD...: runs CMD with a SIZE tmpfs at $T/mnt (read-only, writable, or filled up),
# in a private mount namespace so the mount disappears with the command; lists what CMD left on it.
on_tmpfs() {
  local size="$1" mode="$2"; shift 2
  mkdir -p "$T/mnt"
  if ! command -v unshare >/dev/null || ! unshare -m --propagation private true 2>/dev/null; then
    skip_case "mount namespaces not permitted here (unshare -m)"; return 0
  fi
  [ "$1" = dfq ] && set -- "$dfq_bin" "${@:2}"  # the shell function does not reach the namespace's shell
  local fill=":" remount=":"
  [ "$mode" = ro ] && remount="mount -o remount,ro \"\$mnt\""
  [ "$mode" = full ] && fill="head -c 100M /dev/zero >\"\$mnt/filler\" 2>/dev/null; true"
  # shellcheck disable=SC2016
  unshare -m --propagation private bash -c '
    mnt="$1" left="$2" size="$3"; shift 3
    mount -t tmpfs -o size="$size" tmpfs "$mnt" 2>/dev/null || exit 77
    '"$fill"'; '"$remount"' || exit 77
    "$@"; code=$?
    find "$mnt" -mindepth 1 ! -name filler >"$left"
    exit $code' bash "$T/mnt" "$T/mnt.left" "$size" "$@"
  local code=$?
  [ "$code" -eq 77 ] && skip_case "tmpfs mounts not permitted here"
  return "$code"
}
# as_nobody CMD...: CMD without root privileges (a mode-000 file is readable by root).
as_nobody() {
  if [ "$(id -u)" -ne 0 ]; then "$@"; return; fi
  local drop=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  chmod 755 "$T"
  if ! command -v setpriv >/dev/null || ! "${drop[@]}" "$dfq_bin" --help >/dev/null 2>&1; then
    skip_case "cannot run build/dfq as user nobody here (setpriv, or the checkout's directory modes)"; return 0
  fi
  "${drop[@]}" "$@"
}

# ---------------------------------------------------------------- one case
trim() { local s="$1"; s="${s#"${s%%[![:space:]]*}"}"; printf '%s' "${s%"${s##*[![:space:]]}"}"; }
rows() { table | grep -Ev '^(#|[[:space:]]*$)'; }

# Files under $O with their sizes and checksums: must be identical before and after a failing run.
snapshot() { (cd "$O" && find . -mindepth 1 -printf '%y %p\n' | sort && find . -type f -exec md5sum {} + | sort); }

run_case() {
  local wanted="$1" row="" line
  while IFS= read -r line; do
    [ "$(trim "${line%%|*}")" = "$wanted" ] && row="$line"
  done < <(rows)
  [ -n "$row" ] || { echo "no such case: $wanted (see --list)"; return 2; }
  local name command breaks fixtures code pattern absent args
  IFS='|' read -r name command breaks fixtures code pattern absent args <<<"$row"
  command=$(trim "$command") breaks=$(trim "$breaks") fixtures=$(trim "$fixtures") code=$(trim "$code")
  pattern=$(trim "$pattern") absent=$(trim "$absent") args=$(trim "$args")
  case " $args " in *" $command "*) ;; *) echo "table error: arguments do not run dfq $command"; return 2 ;; esac

  T="$(mktemp -d)"
  # shellcheck disable=SC2034  # O, B and D are used by the eval'd arguments
  O="$T/out" B="$T/blocker" D="$T/data"
  trap 'rm -rf "$T"' EXIT
  mkdir -p "$O"
  local f
  [ "$fixtures" = - ] || for f in $fixtures; do "fx_$f"; done
  local before; before=$(snapshot)

  eval "$args" >"$T/stdout" 2>"$T/stderr"
  local actual=$?
  if [ -f "$T/skip" ]; then echo "skipped: $(cat "$T/skip")"; return 77; fi

  local problems=()
  [ "$actual" -eq "$code" ] || problems+=("exit code $actual, expected $code")
  if [ "$code" -ne 0 ]; then
    local lines; lines=$(grep -c '' "$T/stderr")
    [ "$lines" -eq 1 ] || problems+=("stderr has $lines lines, expected one")
    head -1 "$T/stderr" | grep -q '^error: ' || problems+=("stderr does not start with 'error: '")
    grep -Eq -- "$pattern" "$T/stderr" || problems+=("stderr does not match: $pattern")
    [ "$(snapshot)" = "$before" ] || problems+=("the output dir changed: $(cd "$O" && find . -mindepth 1 | tr '\n' ' ')")
    if [ -s "$T/mnt.left" ]; then problems+=("left on the tmpfs: $(tr '\n' ' ' <"$T/mnt.left")"); fi
  else
    cat "$T/stdout" "$T/stderr" | grep -Eq -- "$pattern" || problems+=("output does not match: $pattern")
  fi
  local path
  if [ "$absent" != - ]; then
    for path in $(eval "echo $absent"); do [ ! -e "$path" ] || problems+=("$path exists"); done
  fi
  local stray; stray=$(find "$T" -name '*.tmp*' 2>/dev/null | tr '\n' ' ')
  [ -z "$stray" ] || problems+=("temporary files left: $stray")

  echo "case:     $name ($command: $breaks)"
  echo "command:  $args"
  if [ "${#problems[@]}" -eq 0 ]; then
    echo "result:   ok, exit $actual: $(head -1 "$T/stderr")"
    return 0
  fi
  printf 'FAILED:   %s\n' "${problems[@]}"
  echo "--- stderr"; head -20 "$T/stderr"; echo "--- stdout"; tail -5 "$T/stdout"
  return 1
}

case "$what" in
  --list) rows | while IFS= read -r line; do trim "${line%%|*}"; echo; done ;;
  --all)
    passed=0 failed=() skipped=0
    for c in $("$0" "$build" "$src" --list); do
      out=$("$0" "$build" "$src" "$c" 2>&1); rc=$?
      if [ $rc -eq 0 ]; then passed=$((passed + 1)); elif [ $rc -eq 77 ]; then skipped=$((skipped + 1)); else
        failed+=("$c"); echo "$out"; echo; fi
    done
    echo "$passed passed, ${#failed[@]} failed (${failed[*]}), $skipped skipped"
    [ "${#failed[@]}" -eq 0 ] ;;
  *) run_case "$what" ;;
esac
