'use strict';
// The client factories against an in-process grpc-js server built from the
// same .proto files: no Python service needed.
const test = require('node:test');
const assert = require('node:assert/strict');

const xm = require('../src/index');

const { grpc } = xm;

function startServer(implementations) {
  const pkg = xm.loadProtos();
  const server = new grpc.Server();
  for (const [serviceName, impl] of Object.entries(implementations)) {
    server.addService(pkg[serviceName].service, impl);
  }
  return new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
      if (err) return reject(err);
      resolve({ server, address: `127.0.0.1:${port}` });
    });
  });
}

test('the protos load and every service has its methods', () => {
  const pkg = xm.loadProtos();
  assert.ok(pkg.ModelService.service.StreamActivations.responseStream);
  assert.ok(pkg.AttributionService.service.Explain.responseStream);
  assert.ok(pkg.ConceptService.service.UploadActivationSet.requestStream);
  assert.ok(pkg.LabelingService.service.LabelConcepts);
  assert.throws(() => xm.createClient('nope', 'localhost:1'), /unknown xaimesh service/);
});

test('unary call with bearer token, tensors on the wire, BadRequest details', async (t) => {
  let seenAuth = null;
  const { server, address } = await startServer({
    ModelService: {
      Score(call, callback) {
        seenAuth = call.metadata.get('authorization')[0];
        const mask = xm.decodeTensor(call.request.keep_mask);
        if (call.request.input_ids.length === 0) {
          // An INVALID_ARGUMENT with a google.rpc.BadRequest detail, as the
          // Python services send it.
          const protobuf = require('protobufjs');
          const root = protobuf.Root.fromJSON({
            nested: {
              BR: { fields: { v: { rule: 'repeated', type: 'FV', id: 1 } } },
              FV: { fields: { field: { type: 'string', id: 1 }, description: { type: 'string', id: 2 } } },
              Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
              St: { fields: { code: { type: 'int32', id: 1 }, message: { type: 'string', id: 2 }, details: { rule: 'repeated', type: 'Any', id: 3 } } },
            },
          });
          const br = root.lookupType('BR').encode({ v: [{ field: 'input_ids', description: 'must not be empty' }] }).finish();
          const st = root
            .lookupType('St')
            .encode({ code: 3, message: 'input_ids: must not be empty', details: [{ type_url: 'type.googleapis.com/google.rpc.BadRequest', value: br }] })
            .finish();
          const md = new grpc.Metadata();
          md.set('grpc-status-details-bin', Buffer.from(st));
          return callback({ code: grpc.status.INVALID_ARGUMENT, details: 'input_ids: must not be empty', metadata: md });
        }
        // One score per row: the number of kept tokens.
        const rows = mask.shape[0];
        const cols = mask.shape[1];
        const scores = new Float32Array(rows);
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) scores[r] += mask.data[r * cols + c];
        callback(null, { scores: xm.encodeTensor(scores, [rows, 1]), model: 'tiny' });
      },
    },
  });
  t.after(() => server.forceShutdown());

  const client = xm.createModelClient(address, { token: 's3cret' });
  t.after(() => client.close());
  const keep = xm.encodeTensor([true, false, true, true, true, true], [2, 3]);
  const response = await xm.unary(client, 'Score', { input_ids: [1, 2, 3], keep_mask: keep }, { timeoutSeconds: 10 });
  assert.equal(seenAuth, 'Bearer s3cret');
  assert.equal(response.model, 'tiny');
  const scores = xm.decodeTensor(response.scores);
  assert.deepEqual(scores.shape, [2, 1]);
  assert.deepEqual(Array.from(scores.data), [2, 3]);

  await assert.rejects(xm.unary(client, 'Score', { input_ids: [], keep_mask: keep }), (err) => {
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    const status = xm.statusDetails(err);
    assert.equal(status.code, 3);
    assert.equal(status.details[0].type, 'google.rpc.BadRequest');
    assert.deepEqual(status.details[0].field_violations, [{ field: 'input_ids', description: 'must not be empty', reason: '' }]);
    return true;
  });
});

test('server streaming: oneof events are named, progress then result', async (t) => {
  const { server, address } = await startServer({
    AttributionService: {
      Explain(call) {
        assert.equal(call.request.method, 'ATTRIBUTION_METHOD_OCCLUSION');
        call.write({ progress: { stage: 'scoring', done: 1, total: 2 } });
        call.write({
          result: {
            input_index: 0,
            attribution: {
              method: 'ATTRIBUTION_METHOD_OCCLUSION',
              input_elements: [{ text: 'Hello' }, { text: ' world' }],
              scores: xm.encodeTensor(new Float32Array([0.25, NaN]), [1, 2]),
            },
          },
        });
        call.end();
      },
    },
  });
  t.after(() => server.forceShutdown());
  const client = xm.createAttributionClient(address, { roundRobin: true });
  t.after(() => client.close());
  const seen = [];
  const events = await xm.collectStream(
    client,
    'Explain',
    { method: 'ATTRIBUTION_METHOD_OCCLUSION', inputs: [{ text: 'Hello world' }] },
    { timeoutSeconds: 10, onEvent: (e) => seen.push(e.event) },
  );
  assert.deepEqual(seen, ['progress', 'result']);
  assert.equal(events[0].progress.done, '1'); // int64 as a decimal string
  const attribution = events[1].result.attribution;
  const scores = xm.decodeTensor(attribution.scores);
  assert.deepEqual(xm.toNested(scores, { jsonSafe: true }), [[0.25, null]]);
});
