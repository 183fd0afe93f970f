// Reference outputs from Google's own TensorFlow Lite interpreter, LiteRT.js (@litertjs/core, its
// XNNPACK CPU build in WebAssembly), run in Node.
// Usage: node litert_reference.mjs NODE_MODULES REQUEST.json RESPONSE.json
// REQUEST: {"jobs": [{"model": PATH, "inputs": [{"shape": [...], "data": BASE64_FLOAT32_LE}]}]}
// RESPONSE: {"results": [{"outputs": [{"name", "shape", "data": BASE64_FLOAT32_LE}]}]}
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import vm from "node:vm";

const [modules, requestPath, responsePath] = process.argv.slice(2);

// LiteRT.js loads its Emscripten glue with a <script> tag, or importScripts() in a worker. Node
// has neither: give it importScripts (the worker path) running the glue in this context, which
// the glue's own Node support then completes (it reads the .wasm with fs).
globalThis.self = globalThis;
globalThis.require = createRequire(import.meta.url);
globalThis.importScripts = (path) => {
  globalThis.__filename = path;
  globalThis.__dirname = path.slice(0, path.lastIndexOf("/"));
  vm.runInThisContext(readFileSync(path, "utf8"), { filename: path });
};

const core = `${modules}/@litertjs/core`;
const { loadLiteRt, loadAndCompile, Tensor } = await import(pathToFileURL(`${core}/dist/index.js`).href);
await loadLiteRt(`${core}/wasm/`);

const toBase64 = (array) => Buffer.from(array.buffer, array.byteOffset, array.byteLength).toString("base64");
const fromBase64 = (text) => {
  const bytes = Buffer.from(text, "base64");
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
};

const results = [];
for (const job of JSON.parse(readFileSync(requestPath, "utf8")).jobs) {
  const model = await loadAndCompile(new Uint8Array(readFileSync(job.model)), { accelerator: "wasm" });
  const inputs = job.inputs.map((input) => new Tensor(fromBase64(input.data), input.shape));
  const outputs = await model.run(inputs);
  const details = model.getOutputDetails();
  results.push({
    outputs: outputs.map((tensor, i) => {
      const data = tensor.toTypedArray();
      const entry = { name: details[i].name, shape: Array.from(details[i].shape), data: toBase64(data) };
      tensor.delete();
      return entry;
    }),
  });
  inputs.forEach((tensor) => tensor.delete());
  model.delete();
}
writeFileSync(responsePath, JSON.stringify({ results }));
