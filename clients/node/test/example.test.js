'use strict';
// Runs examples/attribution_and_activations.js against in-process stand-ins
// of the attribution-service and the model-server (the end-to-end run with
// the real Python services is tests/deploy/test_node_client.py).
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFile } = require('node:child_process');

const xm = require('../src/index');

const { grpc } = xm;
const EXAMPLE = path.join(__dirname, '..', 'examples', 'attribution_and_activations.js');

function serve(services) {
  const pkg = xm.loadProtos();
  const server = new grpc.Server();
  for (const [name, impl] of Object.entries(services)) server.addService(pkg[name].service, impl);
  return new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve({ server, address: `127.0.0.1:${port}` }),
    ),
  );
}

function run(envExtra) {
  return new Promise((resolve) => {
    execFile(process.execPath, [EXAMPLE], { env: { ...process.env, ...envExtra }, timeout: 30000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code : 0, stdout, stderr }),
    );
  });
}

test('example prints attribution scores and activations as JSON', async (t) => {
  const requests = {};
  const { server, address } = await serve({
    AttributionService: {
      Explain(call) {
        requests.explain = call.request;
        requests.explainAuth = call.metadata.get('authorization')[0];
        call.write({ progress: { stage: 'scoring', done: 3, total: 3 } });
        call.write({
          result: {
            input_index: 0,
            attribution: {
              model: 'tiny',
              method: 'ATTRIBUTION_METHOD_OCCLUSION',
              input_elements: [{ text: 'Hi' }, { text: ' there' }, { text: ' you' }],
              num_prompt_elements: 2,
              target_elements: [' you'],
              target_token_ids: ['42'],
              target_scores: [0.5],
              scores: xm.encodeTensor(new Float32Array([0.125, -0.25, NaN]), [1, 3]),
              text: 'Hi there you',
            },
          },
        });
        call.end();
      },
    },
    ModelService: {
      StreamActivations(call) {
        requests.activations = call.request;
        call.write({ header: { split_points: ['1'], hidden_size: 2, num_samples: 2, model: 'tiny' } });
        call.write({
          chunk: {
            split_point: '1',
            rows: xm.encodeTensor(new Float32Array([3, 4, 0, 1, 6, 8]), [3, 2]),
            provenance: [
              { sample_index: 0, token_start: 0, token_end: 1, text: 'Hi' },
              { sample_index: 0, token_start: 1, token_end: 2, text: ' there' },
              { sample_index: 1, token_start: 0, token_end: 1, text: 'you' },
            ],
          },
        });
        call.write({ summary: { num_rows: 3, num_samples: 2 } });
        call.end();
      },
    },
  });
  t.after(() => server.forceShutdown());

  const { code, stdout, stderr } = await run({
    XAIMESH_ATTRIBUTION: address,
    XAIMESH_MODEL_SERVER: address,
    XAIMESH_CONCEPT: '',
    XAIMESH_AUTH_TOKEN: 'tok',
    XAIMESH_EXAMPLE_TEXT: 'Hi there',
    XAIMESH_EXAMPLE_TARGET: ' you',
    XAIMESH_EXAMPLE_LAYER: '1',
  });
  assert.equal(code, 0, stderr);
  assert.match(stderr, /\[attribution\] scoring 3\/3/);
  const out = JSON.parse(stdout);
  assert.equal(requests.explain.method, 'ATTRIBUTION_METHOD_OCCLUSION');
  assert.equal(requests.explain.inputs[0].targets.text, ' you');
  assert.equal(requests.explainAuth, 'Bearer tok');
  assert.deepEqual(requests.activations.split_points, ['1']);
  assert.deepEqual(out.attribution.shape, [1, 3]);
  assert.deepEqual(out.attribution.scores, [[0.125, -0.25, null]]);
  assert.deepEqual(out.attribution.input_elements, ['Hi', ' there', ' you']);
  assert.deepEqual(out.attribution.target_token_ids, [42]);
  assert.equal(out.activations.num_rows, 3);
  assert.equal(out.activations.summary_num_rows, 3);
  assert.deepEqual(
    out.activations.rows.map((r) => r.l2_norm),
    [5, 1, 10],
  );
  assert.deepEqual(out.activations.rows[2].head, [6, 8]);
  assert.equal(out.activations.rows[2].sample_index, 1);
});

test('example exits 1 with the gRPC error when a service is down', async () => {
  const { code, stderr } = await run({
    XAIMESH_ATTRIBUTION: '127.0.0.1:1',
    XAIMESH_MODEL_SERVER: '127.0.0.1:1',
    XAIMESH_EXAMPLE_TIMEOUT: '5',
  });
  assert.equal(code, 1);
  assert.match(stderr, /error: 14 UNAVAILABLE/);
});
