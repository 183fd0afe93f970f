// A stock KServe v2 gRPC client in Node.js (@grpc/grpc-js and @grpc/proto-loader, as any
// JavaScript user of the protocol would write it) against a real outpostd.
'use strict';
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const binDir = process.env.OUTPOST_BIN_DIR;
const fixtures = process.env.OUTPOST_FIXTURES;
const protoDir = process.env.OUTPOST_PROTO_DIR;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

function call(client, method, req) {
  return new Promise((resolve, reject) => client[method](req, (err, res) => (err ? reject(err) : resolve(res))));
}

async function main() {
  const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'outpost-js-'));
  fs.cpSync(path.join(fixtures, 'add_mul'), path.join(repo, 'add_mul'), { recursive: true });
  const [httpPort, grpcPort] = [await freePort(), await freePort()];
  const agent = spawn(path.join(binDir, 'outpostd'), ['--model-repository', repo, '--http-port', String(httpPort),
    '--grpc-port', String(grpcPort), '--allow-unsigned-models', '--auth-dir', path.join(repo, '.auth')],
  { stdio: 'inherit' });
  let failures = 0, passes = 0;
  const check = async (name, fn) => {
    try { await fn(); passes++; console.log(`ok - ${name}`); } catch (e) { failures++; console.log(`not ok - ${name}: ${e.message}`); }
  };
  try {
    const def = protoLoader.loadSync(path.join(protoDir, 'grpc_service.proto'), { keepCase: true, longs: String, defaults: true });
    const { inference } = grpc.loadPackageDefinition(def);
    const client = new inference.GRPCInferenceService(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
    await new Promise((resolve, reject) => client.waitForReady(Date.now() + 30000, (e) => (e ? reject(e) : resolve())));
    for (let i = 0; i < 200; i++) {  // ready once the repository is loaded
      if ((await call(client, 'ServerReady', {})).ready) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await check('ServerLive', async () => assert.strictEqual((await call(client, 'ServerLive', {})).live, true));
    await check('ServerMetadata', async () => assert.strictEqual((await call(client, 'ServerMetadata', {})).name, 'outpost'));
    await check('ModelMetadata', async () => {
      const m = await call(client, 'ModelMetadata', { name: 'add_mul' });
      assert.deepStrictEqual(m.inputs.map((t) => [t.name, t.datatype, t.shape]), [['a', 'FP32', ['-1', '4']], ['b', 'FP32', ['-1', '4']]]);
    });
    await check('ModelInfer raw', async () => {
      const a = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer);
      const res = await call(client, 'ModelInfer', {
        model_name: 'add_mul', id: 'js-1',
        inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 4] }, { name: 'b', datatype: 'FP32', shape: [1, 4] }],
        raw_input_contents: [a, a],
      });
      assert.strictEqual(res.id, 'js-1');
      const sum = res.outputs.findIndex((o) => o.name === 'sum');
      const raw = res.raw_output_contents[sum];
      assert.deepStrictEqual(Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length))), [2, 4, 6, 8]);
    });
    await check('ModelInfer typed', async () => {
      const t = { datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } };
      const res = await call(client, 'ModelInfer', { model_name: 'add_mul', inputs: [{ name: 'a', ...t }, { name: 'b', ...t }],
        outputs: [{ name: 'prod' }] });
      const raw = res.raw_output_contents[0];
      assert.deepStrictEqual(Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length))), [1, 4, 9, 16]);
    });
    await check('unknown model is NOT_FOUND', async () => {
      await assert.rejects(call(client, 'ModelInfer', { model_name: 'nope' }), (e) => e.code === grpc.status.NOT_FOUND);
    });
    client.close();
  } finally {
    agent.kill('SIGTERM');
    await new Promise((r) => agent.on('exit', r));
    fs.rmSync(repo, { recursive: true, force: true });
  }
  console.log(`${passes} passed, ${failures} failed`);
  process.exit(failures ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(1); });
