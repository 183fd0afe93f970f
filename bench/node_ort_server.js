// The server a user would write instead of Outpost for one model: Node's http module,
// onnxruntime-node, KServe v2 JSON in and out. serving_bench measures it beside outpostd.
// Usage: node node_ort_server.js MODEL.onnx MODEL_NAME PORT
'use strict';
const http = require('http');
const ort = require('onnxruntime-node');

const [modelPath, modelName, port] = process.argv.slice(2);
const types = {FP32: ['float32', Float32Array], INT64: ['int64', BigInt64Array]};

function toJson(tensor) {
  const datatype = tensor.type === 'float32' ? 'FP32' : 'INT64';
  const data = Array.from(tensor.data, (v) => (typeof v === 'bigint' ? Number(v) : v));
  return {datatype, shape: tensor.dims, data};
}

ort.InferenceSession.create(modelPath).then((session) => {
  const server = http.createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== `/v2/models/${modelName}/infer`) {
      res.writeHead(404).end();
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString());
        const feeds = {};
        for (const input of body.inputs) {
          const [type, Array_] = types[input.datatype];
          const flat = input.data.flat(Infinity);
          const values = type === 'int64' ? Array_.from(flat, BigInt) : Array_.from(flat);
          feeds[input.name] = new ort.Tensor(type, values, input.shape);
        }
        const results = await session.run(feeds);
        const outputs = Object.entries(results).map(([name, t]) => ({name, ...toJson(t)}));
        const out = JSON.stringify({model_name: modelName, model_version: '1', outputs});
        res.writeHead(200, {'Content-Type': 'application/json'}).end(out);
      } catch (e) {
        res.writeHead(400, {'Content-Type': 'application/json'}).end(JSON.stringify({error: String(e)}));
      }
    });
  });
  server.listen(Number(port), '127.0.0.1', () => console.log('ready'));
});
