#!/usr/bin/env node
// ort_eval.js: runs an ONNX model (e.g. one written by `dfq export`) with ONNX
// Runtime (onnxruntime-node, CPU execution provider) on the images saved by
// `dfq eval --save-inputs FILE`, and writes the same predictions CSV as
// `dfq eval --predictions`, so that tools/compare_predictions.py can compare
// the two row by row.
//
// usage:
//   node tools/ort_eval.js --model M.onnx --inputs FILE --predictions OUT.csv
//        [--threads 2] [--batch 64] [--logits OUT.f32] [--bench RUNS]
//        [--opt all|basic|extended|disabled] [--exact]
//        [--session-config key=value ...] [--profile-nodes [--profile-out FILE]]
//
// Install ONNX Runtime first: scripts/install-ort.sh (onnxruntime-node 1.22.0
// into tools/ort/node_modules). Plain CommonJS, no other dependency.
//
// Inputs: FILE holds raw little-endian float32 values, C-contiguous N*C*H*W, no
// header; FILE.json = {"format":"dfq-inputs","version":1,"dtype":"float32",
// "shape":[N,C,H,W],"paths":[...],"labels":[...]}.
//
// Outputs:
//   OUT.csv     header `path,label,prediction,top5`; prediction = argmax of the
//               logits (ties: lowest index); top5 = the (up to) 5 best indices,
//               best first (ties: lowest index first), separated by spaces;
//               path RFC 4180-quoted when it holds a comma, quote, CR or LF.
//               Written to OUT.csv.tmp.PID and renamed: never half a file.
//   stdout      one JSON line {"images":N,"top1":%,"top5":%,"images_per_second":..,
//               "seconds":..,"ort":"1.22.0"}; images_per_second counts only the
//               session.run() calls (no session creation, no file reading); with
//               --bench RUNS it is the median over RUNS passes over all images
//               after one warm-up pass (the pass that writes the CSV).
//   --logits F  the raw float32 logits, N x K, little-endian, no header.
//   --profile-nodes
//               a second session with ORT profiling runs the first batch; the
//               node events of its profile ("cat":"Node", "<node>_kernel_time")
//               are counted per op type (QLinearConv, Conv, QuantizeLinear,
//               DequantizeLinear, QLinearAdd, ...): which kernels ORT actually
//               ran after its graph optimizations, i.e. what ran in integers.
//               JSON to stderr, or to --profile-out FILE.
// Errors: one line on stderr, `ort_eval: error: ...`, exit 1 (2: usage).
//
// Session options: graphOptimizationLevel = --opt (default all),
// intraOpNumThreads = --threads, interOpNumThreads = 1, sequential execution.
// --session-config key=value (repeatable, or several pairs after one flag) adds
// ORT session config entries (onnxruntime_session_options_config_keys.h). They
// go through SessionOptions.extra: onnxruntime-node's binding
// (js/node/src/session_options_helper.cc, IterateExtraOptions) walks that
// object, joins nested keys with "." and calls AddConfigEntry(key, value) for
// each string value (values must be strings), so "a.b.c=v" becomes
// {a:{b:{c:"v"}}}. The onnxruntime-common 1.22 typings still say `extra` is
// "available only in WebAssembly backend"; the 1.22.0 Node binding does handle
// it (its library holds IterateExtraOptions and "sessionOptions.extra value must
// be a string in Node.js binding"), and tests/ort_tools_test.sh checks that an
// entry takes effect (session.disable_quant_qdq=1 leaves no QLinearConv).
//
// --exact: the int8 precision of ORT's CPU kernels on x86.
//   ORT's MLAS u8s8 (uint8 activations x int8 weights) GEMM/conv kernels on
//   x86-64 without VNNI (SSE4.1, AVX2, AVX-512 without AVX512-VNNI/AVX-VNNI) use
//   vpmaddubsw, which adds two u8*s8 products into a *saturating* int16: with
//   activations up to 255 and weights beyond 7 bits (|w| > 64) the pair sum
//   (up to 2*255*127 = 64770) clips at 32767, so QLinearConv / QLinearMatMul /
//   MatMulInteger / QGemm results are wrong unless weights are 7-bit (the
//   "reduce_range" advice). With VNNI (vpdpbusd) the sums are 32-bit and exact.
//   The switch: session config entry
//       key "session.x64quantprecision", value "1"
//   (kOrtSessionOptionsAvx2PrecisionMode in
//   include/onnxruntime/core/session/onnxruntime_session_options_config_keys.h:
//   "x64 SSE4.1/AVX2/AVX512(with no VNNI) has overflow problem with quantizied
//   matrix multiplication with U8S8. To avoid this we need to use slower U8U8
//   matrix multiplication instead. This option, if turned on, use slower U8U8
//   matrix multiplications. Only effective with AVX2 or AVX512 platforms.").
//   When "1" and MlasPlatformU8S8Overflow() (the CPU's u8u8 and u8s8 dispatches
//   differ), graph_transformer_utils.cc adds Avx2WeightS8ToU8Transformer to the
//   level-2 ("extended") transformers: constant int8 weights of QLinearConv,
//   QLinearMatMul, MatMulInteger, QGemm, MatMulIntegerToFloat,
//   DynamicQuantizeMatMul, QAttention, DynamicQuantizeLSTM are shifted to uint8
//   (w ^ 0x80, zero point + 128) when some weight is outside [-64, 64], so the
//   exact u8u8 kernel runs. It therefore needs --opt extended or all (the
//   default); with basic/disabled ORT does not form those integer ops anyway.
//   Evidence: the string "session.x64quantprecision" is in this package's
//   bin/napi-v6/linux/x64/libonnxruntime.so.1 (1.22.0); it came with
//   microsoft/onnxruntime PR #12088 "x86/64 U8S8 Gemm Precision Fix" (2022,
//   default off): the libonnxruntime.so of onnxruntime-node 1.12.1 does not
//   hold the string, those of 1.13.1, 1.16.0, 1.16.1 and 1.22.0 do, so ORT
//   >= 1.13 honours it (C/C++/Python AddSessionConfigEntry). Through
//   onnxruntime-node it can only be set where the Node binding forwards `extra`
//   to AddConfigEntry: 1.22.0 does; the 1.16.0 and 1.16.1 bindings hold no such
//   code (no IterateExtraOptions, no "sessionOptions.extra" message), so there
//   `extra` is silently ignored. Not measurable on a VNNI CPU (where the default
//   is already exact); tests/ort_tools_test.sh checks --exact's logits of a
//   QLinearConv with full-range int8 weights against numpy to one output
//   quantum, and prints (without judging it) the error of the default path.
//   `--exact` is `--session-config session.x64quantprecision=1`.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

const PROG = 'ort_eval';
const tempFiles = new Set();
const tempDirs = new Set();
process.on('exit', () => {
  for (const f of tempFiles) {
    try { fs.unlinkSync(f); } catch (e) { /* already gone */ }
  }
  for (const d of tempDirs) {
    try { fs.rmSync(d, {recursive: true, force: true}); } catch (e) { /* already gone */ }
  }
});

class UsageError extends Error {}
class RunError extends Error {}

function oneLine(s) {
  return String(s).replace(/\s*\n\s*/g, ' ').trim();
}

const USAGE = `usage: node tools/ort_eval.js --model M.onnx --inputs FILE --predictions OUT.csv
         [--threads 2] [--batch 64] [--logits OUT.f32] [--bench RUNS]
         [--opt all|basic|extended|disabled] [--exact]
         [--session-config key=value ...] [--profile-nodes [--profile-out FILE]]
Runs M.onnx with ONNX Runtime (CPU) on the images of \`dfq eval --save-inputs FILE\`
(FILE + FILE.json) and writes the predictions CSV of \`dfq eval --predictions\`.
  --threads N          intra-op threads (default 2; inter-op threads: 1)
  --batch N            images per session.run (default 64; a fixed batch
                       dimension of the model's input overrides it)
  --logits F           also write the logits, raw float32 N x K
  --bench RUNS         one warm-up pass, then RUNS timed passes: median images/s
  --opt LEVEL          graph optimization level (default all)
  --exact              session.x64quantprecision=1: exact u8u8 int8 kernels on
                       x86 CPUs without VNNI (see the comment at the top)
  --session-config K=V ORT session config entry (repeatable)
  --profile-nodes      count the kernels ORT ran on one batch per op type
  --profile-out F      write that count to F instead of stderr
example:
  node tools/ort_eval.js --model r18.onnx --inputs val.f32 --predictions ort.csv
  python3 tools/compare_predictions.py dfq.csv ort.csv`;

function parseArgs(argv) {
  const a = {threads: 2, batch: 64, opt: 'all', bench: 0, sessionConfig: [], exact: false, profileNodes: false};
  const valueOf = (i, name) => {
    if (i + 1 >= argv.length || (argv[i + 1].startsWith('--') && argv[i + 1].length > 2)) {
      throw new UsageError(`${name} needs a value`);
    }
    return argv[i + 1];
  };
  const positiveInt = (v, name, min) => {
    if (!/^[0-9]+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) {
      throw new UsageError(`${name} must be an integer >= ${min}, not '${v}'`);
    }
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let inline;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 2) {
      inline = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const take = () => {
      if (inline !== undefined) return inline;
      const v = valueOf(i, arg);
      i++;
      return v;
    };
    switch (arg) {
      case '--help': case '-h': a.help = true; break;
      case '--model': a.model = take(); break;
      case '--inputs': a.inputs = take(); break;
      case '--predictions': a.predictions = take(); break;
      case '--logits': a.logits = take(); break;
      case '--profile-out': a.profileOut = take(); break;
      case '--threads': a.threads = positiveInt(take(), '--threads', 1); break;
      case '--batch': a.batch = positiveInt(take(), '--batch', 1); break;
      case '--bench': a.bench = positiveInt(take(), '--bench', 1); break;
      case '--opt': {
        a.opt = take();
        if (!['all', 'basic', 'extended', 'disabled'].includes(a.opt)) {
          throw new UsageError(`--opt must be all, basic, extended or disabled, not '${a.opt}'`);
        }
        break;
      }
      case '--exact': a.exact = true; break;
      case '--profile-nodes': a.profileNodes = true; break;
      case '--session-config': {
        if (inline !== undefined) {
          a.sessionConfig.push(inline);
          break;
        }
        let n = 0;
        while (i + 1 < argv.length && !argv[i + 1].startsWith('--')) {
          a.sessionConfig.push(argv[++i]);
          n++;
        }
        if (n === 0) throw new UsageError('--session-config needs key=value');
        break;
      }
      default:
        throw new UsageError(`unknown argument '${argv[i]}'`);
    }
  }
  if (a.help) return a;
  for (const [key, name] of [['model', '--model'], ['inputs', '--inputs'], ['predictions', '--predictions']]) {
    if (!a[key]) throw new UsageError(`${name} is required`);
  }
  if (a.profileOut && !a.profileNodes) throw new UsageError('--profile-out needs --profile-nodes');
  return a;
}

// "a.b.c=v" entries -> {a:{b:{c:"v"}}} for SessionOptions.extra; also returns the flat map.
function buildExtra(entries) {
  const flat = new Map();
  for (const e of entries) {
    const eq = e.indexOf('=');
    if (eq <= 0) throw new UsageError(`--session-config wants key=value, not '${e}'`);
    const key = e.slice(0, eq);
    const value = e.slice(eq + 1);
    if (key.split('.').some((s) => s.length === 0)) throw new UsageError(`--session-config: bad key '${key}'`);
    if (flat.has(key) && flat.get(key) !== value) {
      throw new UsageError(`--session-config: '${key}' given twice ('${flat.get(key)}' and '${value}')`);
    }
    flat.set(key, value);
  }
  const extra = {};
  for (const [key, value] of flat) {
    const parts = key.split('.');
    let node = extra;
    for (let k = 0; k < parts.length - 1; k++) {
      const p = parts[k];
      if (node[p] === undefined) node[p] = {};
      if (typeof node[p] !== 'object') {
        throw new UsageError(`--session-config: '${key}' clashes with '${parts.slice(0, k + 1).join('.')}'`);
      }
      node = node[p];
    }
    const last = parts[parts.length - 1];
    if (typeof node[last] === 'object') {
      throw new UsageError(`--session-config: '${key}' clashes with the longer keys below it`);
    }
    node[last] = value;
  }
  return {extra, flat};
}

function loadOrt() {
  const dir = path.join(__dirname, 'ort', 'node_modules', 'onnxruntime-node');
  if (!fs.existsSync(dir)) {
    throw new RunError('onnxruntime-node is not installed in tools/ort/node_modules: run scripts/install-ort.sh');
  }
  try {
    return require(dir);
  } catch (e) {
    throw new RunError(`cannot load onnxruntime-node from tools/ort/node_modules: ${oneLine(e.message)}`);
  }
}

// FILE.json and FILE, validated: {shape, n, sampleSize, paths, labels}.
function readInputsMeta(file) {
  const metaPath = `${file}.json`;
  let text;
  try {
    text = fs.readFileSync(metaPath, 'utf8');
  } catch (e) {
    throw new RunError(`${metaPath}: cannot read (${e.code || oneLine(e.message)}); FILE.json comes with \`dfq eval --save-inputs FILE\``);
  }
  let m;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new RunError(`${metaPath}: not JSON (${oneLine(e.message)})`);
  }
  const bad = (what) => new RunError(`${metaPath}: ${what}`);
  if (m === null || typeof m !== 'object' || Array.isArray(m)) throw bad('not a JSON object');
  if (m.format !== 'dfq-inputs') throw bad(`format is ${JSON.stringify(m.format)}, expected "dfq-inputs"`);
  if (m.version !== 1) throw bad(`version ${JSON.stringify(m.version)} is not supported (only 1)`);
  if (m.dtype !== 'float32') throw bad(`dtype ${JSON.stringify(m.dtype)} is not supported (only "float32")`);
  const shape = m.shape;
  if (!Array.isArray(shape) || shape.length < 2 || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw bad(`shape ${JSON.stringify(shape)} is not a list of positive integers [N,C,H,W]`);
  }
  const n = shape[0];
  const sampleSize = shape.slice(1).reduce((x, y) => x * y, 1);
  if (!Array.isArray(m.paths) || m.paths.length !== n || !m.paths.every((p) => typeof p === 'string')) {
    throw bad(`paths must be a list of ${n} strings (shape[0])`);
  }
  if (!Array.isArray(m.labels) || m.labels.length !== n || !m.labels.every((l) => Number.isSafeInteger(l))) {
    throw bad(`labels must be a list of ${n} integers (shape[0])`);
  }
  let st;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new RunError(`${file}: cannot read (${e.code || oneLine(e.message)})`);
  }
  const expected = n * sampleSize * 4;
  if (!st.isFile() || st.size !== expected) {
    throw new RunError(`${file}: ${st.size} bytes, expected ${expected} (float32 x shape ${JSON.stringify(shape)} of ${metaPath})`);
  }
  return {shape, n, sampleSize, paths: m.paths, labels: m.labels};
}

function readFloats(fd, offsetFloats, count, file) {
  const arr = new Float32Array(count);
  const buf = Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength);
  let done = 0;
  while (done < buf.length) {
    const got = fs.readSync(fd, buf, done, buf.length - done, (offsetFloats * 4) + done);
    if (got === 0) throw new RunError(`${file}: ends early (read error at byte ${(offsetFloats * 4) + done})`);
    done += got;
  }
  return arr;
}

// Indices of the k largest values, best first; ties (and NaN, ranked lowest) by lower index.
function topK(data, offset, count, k) {
  const idx = [];
  const val = [];
  for (let j = 0; j < count; j++) {
    let v = data[offset + j];
    if (Number.isNaN(v)) v = -Infinity;
    let p;
    if (idx.length < k) {
      idx.push(j);
      val.push(v);
      p = idx.length - 1;
    } else if (v > val[k - 1]) {
      idx[k - 1] = j;
      val[k - 1] = v;
      p = k - 1;
    } else {
      continue;
    }
    // Move up past strictly smaller values only: an equal value seen earlier (lower index) stays ahead.
    while (p > 0 && val[p] > val[p - 1]) {
      [idx[p], idx[p - 1]] = [idx[p - 1], idx[p]];
      [val[p], val[p - 1]] = [val[p - 1], val[p]];
      p--;
    }
  }
  return idx;
}

// fs.writeSync until every byte is written.
function writeAll(fd, data) {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  for (let done = 0; done < buf.length;) done += fs.writeSync(fd, buf, done, buf.length - done);
}

function csvField(s) {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function tempPathFor(out) {
  return `${out}.tmp.${process.pid}`;
}

function openTemp(out, what) {
  const tmp = tempPathFor(out);
  try {
    const fd = fs.openSync(tmp, 'w');
    tempFiles.add(tmp);
    return {fd, tmp};
  } catch (e) {
    throw new RunError(`${out}: cannot write the ${what} (${e.code || oneLine(e.message)})`);
  }
}

function commitTemp(t, out) {
  fs.closeSync(t.fd);
  fs.renameSync(t.tmp, out);
  tempFiles.delete(t.tmp);
}

function median(xs) {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function describeShape(dims) {
  return `[${dims.map((d) => (typeof d === 'number' && d >= 0 ? d : JSON.stringify(d))).join(',')}]`;
}

// The single input and output, checked against the inputs; the batch size to use.
function checkModel(session, meta, requestedBatch, modelPath) {
  if (session.inputNames.length !== 1) {
    throw new RunError(`${modelPath}: ${session.inputNames.length} inputs (${session.inputNames.join(', ')}), expected exactly 1`);
  }
  if (session.outputNames.length !== 1) {
    throw new RunError(`${modelPath}: ${session.outputNames.length} outputs (${session.outputNames.join(', ')}), expected exactly 1`);
  }
  let batch = requestedBatch;
  let fixedBatch = false;
  const im = session.inputMetadata && session.inputMetadata[0];
  if (im && im.isTensor) {
    if (im.type !== 'float32') throw new RunError(`${modelPath}: input '${session.inputNames[0]}' is ${im.type}, expected float32`);
    const dims = im.shape || [];
    if (dims.length > 0) {
      if (dims.length !== meta.shape.length) {
        throw new RunError(`${modelPath}: input '${session.inputNames[0]}' has shape ${describeShape(dims)}, the inputs ${JSON.stringify(meta.shape)}`);
      }
      for (let d = 1; d < dims.length; d++) {
        if (typeof dims[d] === 'number' && dims[d] > 0 && dims[d] !== meta.shape[d]) {
          throw new RunError(`${modelPath}: input '${session.inputNames[0]}' has shape ${describeShape(dims)}, the inputs ${JSON.stringify(meta.shape)}`);
        }
      }
      if (typeof dims[0] === 'number' && dims[0] > 0) {
        batch = dims[0];  // a fixed batch dimension: the last batch is padded with zeros
        fixedBatch = true;
      }
    }
  }
  const om = session.outputMetadata && session.outputMetadata[0];
  if (om && om.isTensor && om.type !== 'float32') {
    throw new RunError(`${modelPath}: output '${session.outputNames[0]}' is ${om.type}, expected float32`);
  }
  return {inputName: session.inputNames[0], outputName: session.outputNames[0], batch, fixedBatch};
}

async function createSession(ort, model, options) {
  try {
    return await ort.InferenceSession.create(model, options);
  } catch (e) {
    throw new RunError(`${model}: ONNX Runtime cannot load it: ${oneLine(e.message)}`);
  }
}

// One pass over all images: calls onBatch(first, count, logits, K) per batch; returns the seconds in session.run.
async function runPass(ort, session, io, meta, fd, file, onBatch) {
  let seconds = 0;
  const rest = meta.shape.slice(1);
  for (let first = 0; first < meta.n; first += io.batch) {
    const count = Math.min(io.batch, meta.n - first);
    const runCount = io.fixedBatch ? io.batch : count;
    let data = readFloats(fd, first * meta.sampleSize, count * meta.sampleSize, file);
    if (runCount !== count) {
      const padded = new Float32Array(runCount * meta.sampleSize);
      padded.set(data);
      data = padded;
    }
    const tensor = new ort.Tensor('float32', data, [runCount, ...rest]);
    const t0 = process.hrtime.bigint();
    let out;
    try {
      out = await session.run({[io.inputName]: tensor});
    } catch (e) {
      throw new RunError(`ONNX Runtime failed on images ${first}..${first + count - 1}: ${oneLine(e.message)}`);
    }
    seconds += Number(process.hrtime.bigint() - t0) / 1e9;
    const y = out[io.outputName];
    if (!y || y.type !== 'float32') {
      throw new RunError(`output '${io.outputName}' is ${y ? y.type : 'missing'}, expected float32`);
    }
    if (y.dims.length < 1 || y.dims[0] !== runCount || y.data.length % runCount !== 0 || y.data.length === 0) {
      throw new RunError(`output '${io.outputName}' has shape ${describeShape(y.dims)} for a batch of ${runCount}, expected [${runCount},K]`);
    }
    onBatch(first, count, y.data, y.data.length / runCount);
  }
  return seconds;
}

function summarizeProfile(events) {
  const opTypes = {};
  const providers = {};
  const nodes = [];
  for (const ev of Array.isArray(events) ? events : []) {
    if (!ev || ev.cat !== 'Node' || typeof ev.name !== 'string' || !ev.name.endsWith('_kernel_time')) continue;
    const args = ev.args || {};
    const op = args.op_name || '?';
    const provider = args.provider || '?';
    opTypes[op] = (opTypes[op] || 0) + 1;
    providers[provider] = (providers[provider] || 0) + 1;
    nodes.push({name: ev.name.slice(0, -'_kernel_time'.length), op_type: op, provider, us: ev.dur});
  }
  const sorted = {};
  for (const k of Object.keys(opTypes).sort()) sorted[k] = opTypes[k];
  return {kernels: nodes.length, op_types: sorted, providers, nodes};
}

async function profileNodes(ort, args, baseOptions, meta, fd) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ort_eval_profile-'));
  tempDirs.add(dir);
  const options = {...baseOptions, enableProfiling: true, profileFilePrefix: path.join(dir, 'ort_profile')};
  const session = await createSession(ort, args.model, options);
  const io = checkModel(session, meta, args.batch, args.model);
  const one = {...meta, n: Math.min(meta.n, io.batch)};
  await runPass(ort, session, io, one, fd, args.inputs, () => {});
  session.endProfiling();
  await session.release();
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json'));
  if (files.length !== 1) throw new RunError(`ONNX Runtime wrote ${files.length} profile files, expected 1`);
  let events;
  try {
    events = JSON.parse(fs.readFileSync(path.join(dir, files[0]), 'utf8'));
  } catch (e) {
    throw new RunError(`cannot read ORT's profile: ${oneLine(e.message)}`);
  }
  const summary = {model: args.model, opt: args.opt, batch: one.n, ...summarizeProfile(events)};
  if (args.profileOut) {
    const t = openTemp(args.profileOut, 'profile summary');
    writeAll(t.fd, `${JSON.stringify(summary, null, 1)}\n`);
    commitTemp(t, args.profileOut);
  } else {
    const {nodes, ...brief} = summary;  // stderr: one line, without the per-node list
    fs.writeSync(2, `${JSON.stringify(brief)}\n`);
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    fs.writeSync(1, `${USAGE}\n`);
    return;
  }
  if (os.endianness() !== 'LE') throw new RunError('this host is big-endian; the inputs file is little-endian float32');
  const entries = [...(args.exact ? ['session.x64quantprecision=1'] : []), ...args.sessionConfig];
  const {extra} = buildExtra(entries);
  const meta = readInputsMeta(args.inputs);
  const ort = loadOrt();

  const baseOptions = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: args.opt,
    intraOpNumThreads: args.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    logSeverityLevel: 4,  // fatal only: ORT's errors come back as exceptions, printed as one line
    extra,
  };
  const fd = fs.openSync(args.inputs, 'r');
  // The outputs' temporary files first: an unwritable place fails before the run, not after it.
  const csv = openTemp(args.predictions, 'predictions');
  const logits = args.logits ? openTemp(args.logits, 'logits') : null;
  if (args.profileNodes) await profileNodes(ort, args, baseOptions, meta, fd);

  const session = await createSession(ort, args.model, baseOptions);
  const io = checkModel(session, meta, args.batch, args.model);

  const predictions = new Int32Array(meta.n);
  const top5 = new Array(meta.n);
  let classes = 0;
  let correct1 = 0;
  let correct5 = 0;
  const seconds = await runPass(ort, session, io, meta, fd, args.inputs, (first, count, data, k) => {
    if (classes === 0) classes = k;
    if (k !== classes) throw new RunError(`output '${io.outputName}' has ${k} values per image here, ${classes} before`);
    for (let i = 0; i < count; i++) {
      const best = topK(data, i * k, k, Math.min(5, k));
      predictions[first + i] = best[0];
      top5[first + i] = best;
      const label = meta.labels[first + i];
      if (best[0] === label) correct1++;
      if (best.includes(label)) correct5++;
    }
    if (logits) {
      const view = Buffer.from(data.buffer, data.byteOffset, count * k * 4);
      writeAll(logits.fd, view);
    }
  });

  let imagesPerSecond = seconds > 0 ? meta.n / seconds : null;
  const benchRates = [];
  for (let r = 0; r < args.bench; r++) {
    const s = await runPass(ort, session, io, meta, fd, args.inputs, () => {});
    benchRates.push(s > 0 ? meta.n / s : 0);
  }
  if (args.bench > 0) imagesPerSecond = median(benchRates);
  await session.release();
  fs.closeSync(fd);

  const lines = ['path,label,prediction,top5'];
  const flush = () => {
    writeAll(csv.fd, `${lines.join('\n')}\n`);
    lines.length = 0;
  };
  for (let i = 0; i < meta.n; i++) {
    lines.push(`${csvField(meta.paths[i])},${meta.labels[i]},${predictions[i]},${top5[i].join(' ')}`);
    if (lines.length >= 4096) flush();
  }
  if (lines.length) flush();
  commitTemp(csv, args.predictions);
  if (logits) commitTemp(logits, args.logits);

  const round = (x, d) => (x === null ? null : Number(x.toFixed(d)));
  const result = {
    images: meta.n,
    top1: round((100 * correct1) / meta.n, 4),
    top5: round((100 * correct5) / meta.n, 4),
    images_per_second: round(imagesPerSecond, 2),
    seconds: round(seconds, 4),
    classes,
    batch: io.batch,
    threads: args.threads,
    opt: args.opt,
    ort: ort.env.versions.node || ort.env.versions.common,
  };
  if (args.bench > 0) {
    result.bench_runs = args.bench;
    result.bench_images_per_second = benchRates.map((x) => round(x, 2));
  }
  if (entries.length) result.session_config = Object.fromEntries(buildExtra(entries).flat);
  fs.writeSync(1, `${JSON.stringify(result)}\n`);
}

main().then(() => process.exit(0), (e) => {
  if (e instanceof UsageError) {
    fs.writeSync(2, `${PROG}: error: ${e.message} (see --help)\n`);
    process.exit(2);
  }
  const message = e instanceof RunError ? e.message : oneLine(e && e.message ? e.message : e);
  fs.writeSync(2, `${PROG}: error: ${message}\n`);
  process.exit(1);
});
