'use strict';
// Clients of the xaimesh services, built at run time from the .proto files
// (no generated code): @grpc/proto-loader reads protos/xaimesh/v1/*.proto
// with protos/ as the include path (google/rpc/status.proto lives there;
// google/protobuf/any.proto comes with protobufjs).

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const tensor = require('./tensor');

// clients/node/src -> repository root /protos
const DEFAULT_PROTO_ROOT = path.resolve(__dirname, '..', '..', '..', 'protos');
const PROTO_FILES = [
  'xaimesh/v1/tensor.proto',
  'xaimesh/v1/model.proto',
  'xaimesh/v1/attribution.proto',
  'xaimesh/v1/concept.proto',
  'xaimesh/v1/labeling.proto',
];

// Field names as in the .proto (raw_contents, input_ids...), 64-bit integers
// as decimal strings (exact), enums as their names, bytes as Buffers, unset
// scalars as their defaults, and a virtual field naming the set member of
// each oneof (e.g. response.event === 'progress').
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
};

// Fully-qualified service name -> short name used by the factories.
const SERVICES = {
  model: 'ModelService',
  attribution: 'AttributionService',
  concept: 'ConceptService',
  labeling: 'LabelingService',
};

// Default ports of the services (docs/deploy.md).
const DEFAULT_PORTS = { model: 50051, attribution: 50052, concept: 50053, labeling: 50054 };

const packageCache = new Map();

/**
 * Loads the xaimesh.v1 package ({ModelService, AttributionService, ...,
 * and the message types}) from the .proto files under `protoRoot`
 * (default: the repository's protos/ directory, or $XAIMESH_PROTO_ROOT).
 */
function loadProtos(protoRoot) {
  const root = path.resolve(protoRoot || process.env.XAIMESH_PROTO_ROOT || DEFAULT_PROTO_ROOT);
  if (packageCache.has(root)) return packageCache.get(root);
  if (!fs.existsSync(path.join(root, PROTO_FILES[0]))) {
    throw new Error(`xaimesh protos not found under ${root} (set XAIMESH_PROTO_ROOT)`);
  }
  const definition = protoLoader.loadSync(PROTO_FILES, { ...LOADER_OPTIONS, includeDirs: [root] });
  const loaded = grpc.loadPackageDefinition(definition).xaimesh.v1;
  packageCache.set(root, loaded);
  return loaded;
}

function readMaybeFile(value) {
  if (value == null) return null;
  if (Buffer.isBuffer(value)) return value;
  return fs.readFileSync(value);
}

/**
 * Channel credentials from options.
 *   tls: false / undefined      plaintext
 *   tls: true                   TLS with the system roots
 *   tls: {ca, cert, key}        TLS; ca = PEM Buffer or file path of the
 *                               server's CA; cert + key = client certificate
 *                               for mTLS (Buffers or file paths)
 */
function channelCredentials(tls) {
  if (!tls) return grpc.credentials.createInsecure();
  if (tls === true) return grpc.credentials.createSsl();
  return grpc.credentials.createSsl(readMaybeFile(tls.ca), readMaybeFile(tls.key), readMaybeFile(tls.cert));
}

/**
 * A client interceptor that adds "authorization: Bearer <token>" to every
 * call. An interceptor (not call credentials) so that it also works on
 * plaintext channels inside a cluster; prefer TLS when the network is not
 * trusted.
 */
function bearerTokenInterceptor(token) {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

/**
 * Creates a client of one service.
 *
 * @param {'model'|'attribution'|'concept'|'labeling'} service
 * @param {string} address  "host:port" or any gRPC target ("dns:///svc:50051")
 * @param {object} [options]
 * @param {string} [options.token]   bearer token (XAIMESH_AUTH_TOKEN of the server)
 * @param {boolean|object} [options.tls]  see channelCredentials
 * @param {string} [options.serverName]   TLS name to verify when it differs from the address host
 * @param {boolean} [options.roundRobin]  spread calls over every address the
 *        target resolves to (use with a headless Service and a dns:/// target)
 * @param {object} [options.channelOptions] extra gRPC channel options
 * @param {string} [options.protoRoot]    where the .proto files are
 */
function createClient(service, address, options = {}) {
  const serviceName = SERVICES[service];
  if (!serviceName) throw new Error(`unknown xaimesh service ${JSON.stringify(service)} (${Object.keys(SERVICES).join(', ')})`);
  const target = address || `localhost:${DEFAULT_PORTS[service]}`;
  const pkg = loadProtos(options.protoRoot);
  const channelOptions = {
    // Tensors stream in chunks of at most 4 MiB; leave room for metadata.
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    'grpc.max_send_message_length': 16 * 1024 * 1024,
    'grpc.keepalive_time_ms': 30000,
    ...(options.channelOptions || {}),
  };
  if (options.serverName) channelOptions['grpc.ssl_target_name_override'] = options.serverName;
  if (options.roundRobin) {
    channelOptions['grpc.service_config'] = JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] });
  }
  if (options.token) {
    channelOptions.interceptors = [...(channelOptions.interceptors || []), bearerTokenInterceptor(options.token)];
  }
  return new pkg[serviceName](target, channelCredentials(options.tls), channelOptions);
}

const createModelClient = (address, options) => createClient('model', address, options);
const createAttributionClient = (address, options) => createClient('attribution', address, options);
const createConceptClient = (address, options) => createClient('concept', address, options);
const createLabelingClient = (address, options) => createClient('labeling', address, options);

/** A gRPC deadline `seconds` from now. */
function deadline(seconds) {
  return new Date(Date.now() + seconds * 1000);
}

/** Promise of a unary call: unary(client, 'GetModel', {model: ''}). */
function unary(client, method, request, { metadata, timeoutSeconds } = {}) {
  const callOptions = timeoutSeconds ? { deadline: deadline(timeoutSeconds) } : {};
  return new Promise((resolve, reject) => {
    client[method](request, metadata || new grpc.Metadata(), callOptions, (err, response) =>
      err ? reject(err) : resolve(response),
    );
  });
}

/**
 * Runs a server-streaming call and collects its events. `onEvent(message)`
 * sees each message as it arrives (e.g. progress). Resolves to the list of
 * messages; rejects with the gRPC error (err.code, err.details, err.metadata).
 */
function collectStream(client, method, request, { metadata, timeoutSeconds, onEvent } = {}) {
  const callOptions = timeoutSeconds ? { deadline: deadline(timeoutSeconds) } : {};
  return new Promise((resolve, reject) => {
    const events = [];
    const call = client[method](request, metadata || new grpc.Metadata(), callOptions);
    call.on('data', (message) => {
      events.push(message);
      if (onEvent) onEvent(message);
    });
    call.on('error', reject);
    call.on('end', () => resolve(events));
  });
}

/**
 * Decodes the google.rpc.BadRequest (and other well-known) details of a gRPC
 * error from its "grpc-status-details-bin" trailer. Returns
 * {code, message, details: [{type, ...fields}]} or null when there are none.
 */
function statusDetails(err) {
  const values = err && err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (!values || values.length === 0) return null;
  const protobuf = require('protobufjs');
  const root = protobuf.Root.fromJSON({
    nested: {
      google: {
        nested: {
          protobuf: { nested: { Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } } } },
          rpc: {
            nested: {
              Status: {
                fields: {
                  code: { type: 'int32', id: 1 },
                  message: { type: 'string', id: 2 },
                  details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 },
                },
              },
              BadRequest: {
                fields: { field_violations: { rule: 'repeated', type: 'FieldViolation', id: 1 } },
                nested: {
                  FieldViolation: {
                    fields: {
                      field: { type: 'string', id: 1 },
                      description: { type: 'string', id: 2 },
                      reason: { type: 'string', id: 3 },
                    },
                  },
                },
              },
              ErrorInfo: {
                fields: {
                  reason: { type: 'string', id: 1 },
                  domain: { type: 'string', id: 2 },
                  metadata: { keyType: 'string', type: 'string', id: 3 },
                },
              },
              ResourceInfo: {
                fields: {
                  resource_type: { type: 'string', id: 1 },
                  resource_name: { type: 'string', id: 2 },
                  owner: { type: 'string', id: 3 },
                  description: { type: 'string', id: 4 },
                },
              },
            },
          },
        },
      },
    },
  });
  const Status = root.lookupType('google.rpc.Status');
  const status = Status.toObject(Status.decode(values[0]), { defaults: true });
  const details = status.details.map((any) => {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    let type = null;
    try {
      type = root.lookupType(typeName);
    } catch (_) {
      type = null;
    }
    if (!type) return { type: typeName, value: Buffer.from(any.value).toString('base64') };
    return { type: typeName, ...type.toObject(type.decode(any.value), { defaults: true }) };
  });
  return { code: status.code, message: status.message, details };
}

module.exports = {
  grpc,
  loadProtos,
  createClient,
  createModelClient,
  createAttributionClient,
  createConceptClient,
  createLabelingClient,
  bearerTokenInterceptor,
  channelCredentials,
  deadline,
  unary,
  collectStream,
  statusDetails,
  DEFAULT_PORTS,
  DEFAULT_PROTO_ROOT,
  ...tensor,
};
