#!/usr/bin/env node
'use strict';
// An Occlusion attribution (AttributionService.Explain, streamed) and the
// activations of a layer (ModelService.StreamActivations, streamed), printed
// as one JSON document on stdout. Progress goes to stderr.
//
//   XAIMESH_ATTRIBUTION=localhost:50052 XAIMESH_MODEL_SERVER=localhost:50051 \
//     node examples/attribution_and_activations.js
//
// Environment:
//   XAIMESH_ATTRIBUTION    attribution-service address (default localhost:50052)
//   XAIMESH_MODEL_SERVER   model-server address (default localhost:50051)
//   XAIMESH_CONCEPT        optional concept-service address: the activations
//                          are also stored there as an activation set
//   XAIMESH_AUTH_TOKEN     optional bearer token
//   XAIMESH_TLS_CA         optional CA file: use TLS (with XAIMESH_TLS_CLIENT_CERT /
//                          XAIMESH_TLS_CLIENT_KEY for mTLS)
//   XAIMESH_EXAMPLE_MODEL  model id (default: the server's default model)
//   XAIMESH_EXAMPLE_TEXT, XAIMESH_EXAMPLE_TARGET, XAIMESH_EXAMPLE_LAYER
//   XAIMESH_EXAMPLE_TIMEOUT  seconds per call (default 300)

const path = require('node:path');
const xm = require(path.join(__dirname, '..', 'src'));

const env = process.env;
const TEXT = env.XAIMESH_EXAMPLE_TEXT || 'Alice and Bob enter the bar, ';
const TARGET = env.XAIMESH_EXAMPLE_TARGET || 'then Alice offers a drink to Bob.';
const LAYER = env.XAIMESH_EXAMPLE_LAYER || '1';
const MODEL = env.XAIMESH_EXAMPLE_MODEL || '';
const TIMEOUT = Number(env.XAIMESH_EXAMPLE_TIMEOUT || 300);

function clientOptions() {
  const options = {};
  if (env.XAIMESH_AUTH_TOKEN) options.token = env.XAIMESH_AUTH_TOKEN;
  if (env.XAIMESH_TLS_CA) {
    options.tls = { ca: env.XAIMESH_TLS_CA, cert: env.XAIMESH_TLS_CLIENT_CERT, key: env.XAIMESH_TLS_CLIENT_KEY };
    if (env.XAIMESH_TLS_SERVER_NAME) options.serverName = env.XAIMESH_TLS_SERVER_NAME;
  }
  return options;
}

function logProgress(service) {
  return (event) => {
    if (event.event === 'progress') {
      const p = event.progress;
      process.stderr.write(`[${service}] ${p.stage} ${p.done}/${p.total}${p.message ? ` ${p.message}` : ''}\n`);
    }
  };
}

async function explain(address) {
  const client = xm.createAttributionClient(address, clientOptions());
  try {
    const events = await xm.collectStream(
      client,
      'Explain',
      {
        model: MODEL,
        method: 'ATTRIBUTION_METHOD_OCCLUSION',
        parameters: { occlusion: { window: 1 } },
        inputs: [{ text: TEXT, targets: { text: TARGET } }],
        granularity: 'GRANULARITY_WORD',
        inference_mode: 'INFERENCE_MODE_SOFTMAX',
      },
      { timeoutSeconds: TIMEOUT, onEvent: logProgress('attribution') },
    );
    const errors = events.filter((e) => e.event === 'item_error');
    if (errors.length) throw new Error(`Explain item error: ${JSON.stringify(errors[0].item_error)}`);
    const results = events.filter((e) => e.event === 'result');
    if (results.length !== 1) throw new Error(`Explain: expected one result, got ${results.length}`);
    const a = results[0].result.attribution;
    const scores = xm.decodeTensor(a.scores);
    return {
      model: a.model,
      method: a.method,
      granularity: a.granularity,
      inference_mode: a.inference_mode,
      text: a.text,
      input_elements: a.input_elements.map((s) => s.text),
      num_prompt_elements: a.num_prompt_elements,
      target_elements: a.target_elements,
      target_token_ids: a.target_token_ids.map(Number),
      target_scores: a.target_scores,
      shape: scores.shape,
      // NaN (elements after the target) become null.
      scores: xm.toNested(scores, { jsonSafe: true }),
      progress_events: events.filter((e) => e.event === 'progress').length,
    };
  } finally {
    client.close();
  }
}

async function activations(address) {
  const client = xm.createModelClient(address, clientOptions());
  try {
    const events = await xm.collectStream(
      client,
      'StreamActivations',
      {
        model: MODEL,
        texts: [TEXT, TARGET],
        split_points: [LAYER],
        granularity: 'GRANULARITY_TOKEN',
        dtype: 'DATA_TYPE_FLOAT32',
      },
      { timeoutSeconds: TIMEOUT, onEvent: logProgress('model') },
    );
    const header = events.find((e) => e.event === 'header');
    const errors = events.filter((e) => e.event === 'item_error');
    if (errors.length) throw new Error(`StreamActivations item error: ${JSON.stringify(errors[0].item_error)}`);
    const rows = [];
    const provenance = [];
    let hidden = null;
    let splitPoint = null;
    for (const e of events.filter((ev) => ev.event === 'chunk')) {
      const t = xm.decodeTensor(e.chunk.rows);
      hidden = t.shape[1];
      splitPoint = e.chunk.split_point;
      for (let r = 0; r < t.shape[0]; r++) rows.push(t.data.subarray(r * hidden, (r + 1) * hidden));
      provenance.push(...e.chunk.provenance);
    }
    const norm = (row) => Math.sqrt(row.reduce((s, v) => s + v * v, 0));
    const summary = events.find((e) => e.event === 'summary');
    return {
      model: header ? header.header.model : null,
      split_point: splitPoint,
      hidden_size: header ? header.header.hidden_size : hidden,
      num_rows: rows.length,
      summary_num_rows: summary ? Number(summary.summary.num_rows) : null,
      rows: rows.map((row, i) => ({
        sample_index: Number(provenance[i] ? provenance[i].sample_index : -1),
        token_start: provenance[i] ? provenance[i].token_start : -1,
        text: provenance[i] ? provenance[i].text : null,
        l2_norm: norm(row),
        head: Array.from(row.subarray(0, 4)),
      })),
    };
  } finally {
    client.close();
  }
}

async function conceptActivationSet(address) {
  const client = xm.createConceptClient(address, clientOptions());
  try {
    const events = await xm.collectStream(
      client,
      'CreateActivationSets',
      {
        model: MODEL,
        texts: [TEXT, TARGET],
        split_points: [LAYER],
        granularity: 'GRANULARITY_TOKEN',
        display_name: 'node-example',
      },
      { timeoutSeconds: TIMEOUT, onEvent: logProgress('concept') },
    );
    const sets = events.filter((e) => e.event === 'sets').flatMap((e) => e.sets.sets);
    return sets.map((s) => ({ name: s.name, shape: s.shape.map(Number), split_point: s.split_point }));
  } finally {
    client.close();
  }
}

async function main() {
  const out = {};
  out.attribution = await explain(env.XAIMESH_ATTRIBUTION || `localhost:${xm.DEFAULT_PORTS.attribution}`);
  out.activations = await activations(env.XAIMESH_MODEL_SERVER || `localhost:${xm.DEFAULT_PORTS.model}`);
  if (env.XAIMESH_CONCEPT) out.activation_sets = await conceptActivationSet(env.XAIMESH_CONCEPT);
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main().catch((err) => {
  const details = xm.statusDetails(err);
  process.stderr.write(`error: ${err.message}\n`);
  if (details) process.stderr.write(`details: ${JSON.stringify(details)}\n`);
  process.exit(1);
});
