// A stock @grpc/grpc-js client calling an agent with API keys in its metadata, as a Node.js
// user would. Usage: node grpc_js_auth.cjs HOST:PORT CASES_JSON, where CASES_JSON lists
// {"name", "method", "metadata": {key: value}}; prints {"name": grpc status code} as JSON.
'use strict';
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const requests = {
  ServerLive: {},
  ServerReady: {},
  ServerMetadata: {},
  ModelReady: { name: 'add_mul' },
  ModelMetadata: { name: 'add_mul' },
  ModelInfer: {
    model_name: 'add_mul',
    inputs: ['a', 'b'].map((name) => ({ name, datatype: 'FP32', shape: [1, 4] })),
    raw_input_contents: [0, 1].map(() => Buffer.from(new Float32Array([1, 2, 3, 4]).buffer)),
  },
};

async function main() {
  const [address, casesJson] = process.argv.slice(2);
  const def = protoLoader.loadSync(path.join(process.env.OUTPOST_PROTO_DIR, 'grpc_service.proto'),
    { keepCase: true, longs: String, defaults: true });
  const { inference } = grpc.loadPackageDefinition(def);
  const client = new inference.GRPCInferenceService(address, grpc.credentials.createInsecure());
  const out = {};
  for (const c of JSON.parse(casesJson)) {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(c.metadata || {})) md.set(k, v);
    out[c.name] = await new Promise((resolve) => {
      client[c.method](requests[c.method], md, { deadline: Date.now() + 30000 },
        (err) => resolve(err ? err.code : 0));
    });
  }
  client.close();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
