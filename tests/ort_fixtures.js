// node tests/ort_fixtures.js LIST.tsv: runs every ONNX file of the list
// (written by tests/export_fixtures) in ONNX Runtime on its inputs and compares
// the output with dfq's simulated engine: max |ort - sim| / max |sim| per file.
// The two round at the same points; they differ where a value lands within
// float error of a rounding boundary (or on an exact tie: ONNX rounds half to
// even, dfq half away), which moves one level at that point. Prints one line
// per file and exits 1 if any file fails to run or differs by more than TOL
// (argument 2, default 0.05 of the output range).
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require(process.env.ORT_DIR || path.join(__dirname, '..', 'tools', 'ort', 'node_modules', 'onnxruntime-node'));

function floats(file) {
  const b = fs.readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

async function check(model, inputs, sim, tol) {
  const meta = JSON.parse(fs.readFileSync(inputs + '.json', 'utf8'));
  // session.x64quantprecision: ORT's exact int8 path on x86 without VNNI (tools/ort_eval.js --exact).
  const session = await ort.InferenceSession.create(
      model, {graphOptimizationLevel: 'all', intraOpNumThreads: 1, extra: {session: {x64quantprecision: '1'}}});
  const feed = {[session.inputNames[0]]: new ort.Tensor('float32', floats(inputs), meta.shape)};
  const y = (await session.run(feed))[session.outputNames[0]].data;
  const s = floats(sim);
  if (y.length !== s.length) throw new Error(`${y.length} outputs, simulated ${s.length}`);
  let diff = 0, range = 0;
  for (let i = 0; i < s.length; ++i) diff = Math.max(diff, Math.abs(y[i] - s[i])), range = Math.max(range, Math.abs(s[i]));
  return diff / Math.max(range, 1e-12);
}

(async () => {
  const [list, tolText] = process.argv.slice(2);
  const tol = tolText ? Number(tolText) : 0.05;
  let failed = 0, count = 0;
  for (const line of fs.readFileSync(list, 'utf8').split('\n').filter((l) => l)) {
    const [model, inputs, sim] = line.split('\t');
    ++count;
    try {
      const rel = await check(model, inputs, sim, tol);
      const ok = rel <= tol;
      if (!ok) ++failed;
      console.log(`${ok ? 'ok  ' : 'FAIL'} ${path.basename(model)} max|ort-sim|/max|sim| ${rel.toExponential(2)}`);
    } catch (e) {
      ++failed;
      console.log(`FAIL ${path.basename(model)} ${String(e.message || e).split('\n')[0]}`);
    }
  }
  console.log(`${count - failed} of ${count} files within ${tol} of the simulated engine`);
  process.exit(failed ? 1 : 0);
})();
