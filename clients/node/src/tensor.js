'use strict';
// The xaimesh.v1.Tensor message <-> JavaScript typed arrays.
//
// A Tensor is {dtype, shape, raw_contents}: raw little-endian bytes in
// row-major order whose length must be prod(shape) * itemsize(dtype). Bytes
// that arrive from gRPC are a Buffer slice of the received message, at any
// offset: they are always copied into a fresh, aligned ArrayBuffer before a
// typed array is laid over them, so the result never aliases the message.
//
// decodeTensor widens the 16-bit floats (float16, bfloat16) to Float32Array,
// returns int64 as BigInt64Array and bool as Uint8Array (0 / 1).
// encodeTensor goes the other way, rounding to nearest-even when narrowing to
// float16 / bfloat16.

const os = require('node:os');

const LITTLE_ENDIAN_HOST = os.endianness() === 'LE';

// name -> enum number / enum name / item size / decoded array type
const DTYPES = {
  float32: { number: 1, enumName: 'DATA_TYPE_FLOAT32', itemsize: 4, Array: Float32Array },
  float16: { number: 2, enumName: 'DATA_TYPE_FLOAT16', itemsize: 2, Array: Float32Array },
  bfloat16: { number: 3, enumName: 'DATA_TYPE_BFLOAT16', itemsize: 2, Array: Float32Array },
  float64: { number: 4, enumName: 'DATA_TYPE_FLOAT64', itemsize: 8, Array: Float64Array },
  int64: { number: 5, enumName: 'DATA_TYPE_INT64', itemsize: 8, Array: BigInt64Array },
  int32: { number: 6, enumName: 'DATA_TYPE_INT32', itemsize: 4, Array: Int32Array },
  int8: { number: 7, enumName: 'DATA_TYPE_INT8', itemsize: 1, Array: Int8Array },
  uint8: { number: 8, enumName: 'DATA_TYPE_UINT8', itemsize: 1, Array: Uint8Array },
  bool: { number: 9, enumName: 'DATA_TYPE_BOOL', itemsize: 1, Array: Uint8Array },
};

const BY_NUMBER = new Map(Object.entries(DTYPES).map(([name, d]) => [d.number, name]));
const BY_ENUM_NAME = new Map(Object.entries(DTYPES).map(([name, d]) => [d.enumName, name]));

/**
 * Normalises a dtype given as 'float32', 'DATA_TYPE_FLOAT32', 1 (enum number)
 * to the short name ('float32'). Throws TypeError for anything else,
 * DATA_TYPE_UNSPECIFIED included.
 */
function dtypeName(dtype) {
  if (typeof dtype === 'number') {
    const name = BY_NUMBER.get(dtype);
    if (name) return name;
  } else if (typeof dtype === 'string') {
    if (Object.prototype.hasOwnProperty.call(DTYPES, dtype.toLowerCase())) return dtype.toLowerCase();
    const name = BY_ENUM_NAME.get(dtype.toUpperCase());
    if (name) return name;
  }
  throw new TypeError(`unsupported tensor dtype: ${JSON.stringify(dtype)}`);
}

function itemsize(dtype) {
  return DTYPES[dtypeName(dtype)].itemsize;
}

/** The proto enum name ('DATA_TYPE_FLOAT32') of a dtype. */
function dtypeEnumName(dtype) {
  return DTYPES[dtypeName(dtype)].enumName;
}

// A shape entry may be a number, a decimal string (proto-loader longs:
// String), a BigInt or a Long object (longs: Long / default options).
function toDim(value, axis) {
  let n;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'bigint') n = Number(value);
  else if (typeof value === 'string' && /^-?\d+$/.test(value.trim())) n = Number(value);
  else if (value && typeof value === 'object' && typeof value.toNumber === 'function') n = value.toNumber();
  else throw new TypeError(`shape[${axis}] is not an integer: ${JSON.stringify(value)}`);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`shape[${axis}] must be a non-negative integer, got ${String(value)}`);
  }
  return n;
}

/** Shape entries as plain numbers (validated). */
function normalizeShape(shape) {
  if (shape == null) return [];
  if (!Array.isArray(shape)) throw new TypeError('shape must be an array');
  return shape.map(toDim);
}

function numElements(shape) {
  let n = 1;
  for (const d of shape) n *= d;
  if (!Number.isSafeInteger(n)) throw new RangeError(`tensor too large: shape [${shape.join(', ')}]`);
  return n;
}

function toUint8(raw) {
  if (raw == null) return new Uint8Array(0);
  if (raw instanceof Uint8Array) return raw; // Buffer is a Uint8Array
  if (raw instanceof ArrayBuffer) return new Uint8Array(raw);
  if (ArrayBuffer.isView(raw)) return new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  if (typeof raw === 'string') return Buffer.from(raw, 'base64'); // proto-loader bytes: String
  throw new TypeError('raw_contents must be a Buffer, a Uint8Array or a base64 string');
}

// ---- 16-bit floats --------------------------------------------------------

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

function bf16BitsToFloat(bits) {
  U32[0] = (bits & 0xffff) << 16;
  return F32[0];
}

function floatToBf16Bits(value) {
  F32[0] = value;
  const bits = U32[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) {
    return ((bits >>> 16) | 0x0040) & 0xffff; // NaN stays a (quiet) NaN
  }
  // Round to nearest, ties to even.
  const rounded = bits + 0x7fff + ((bits >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

function f16BitsToFloat(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x03ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero / subnormal
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

function floatToF16Bits(value) {
  F32[0] = value;
  const x = U32[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x007fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x0200 : 0); // inf / NaN
  let e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow -> signed zero
    // Subnormal half: shift the (implicit-1) mantissa into place, rounding
    // to nearest even.
    mantissa |= 0x00800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let sub = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    if (rest > half || (rest === half && (sub & 1))) sub += 1;
    return sign | sub;
  }
  let bits = sign | (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // Round to nearest even; a carry into the exponent is what we want
  // (and turns the largest finite values into inf correctly).
  if (rest > 0x1000 || (rest === 0x1000 && (bits & 1))) bits += 1;
  return bits;
}

// ---- decode -----------------------------------------------------------------

/**
 * Decodes a Tensor message into {dtype, shape, data}.
 *
 * `tensor` is a decoded xaimesh.v1.Tensor ({dtype, shape, raw_contents});
 * dtype may be the enum name or number. `data` is a fresh typed array:
 * Float32Array (float32, and float16 / bfloat16 widened), Float64Array,
 * BigInt64Array (int64), Int32Array, Int8Array, Uint8Array (uint8, bool).
 * Throws RangeError when the byte length does not match the shape.
 */
function decodeTensor(tensor) {
  if (tensor == null) throw new TypeError('decodeTensor: no tensor');
  const dtype = dtypeName(tensor.dtype);
  const spec = DTYPES[dtype];
  const shape = normalizeShape(tensor.shape);
  const raw = toUint8(tensor.raw_contents !== undefined ? tensor.raw_contents : tensor.rawContents);
  const count = numElements(shape);
  const expected = count * spec.itemsize;
  if (raw.byteLength !== expected) {
    throw new RangeError(
      `tensor byte length ${raw.byteLength} does not match shape [${shape.join(', ')}] ` +
        `of ${dtype} (${count} x ${spec.itemsize} = ${expected} bytes)`,
    );
  }
  return { dtype, shape, data: decodeBytes(raw, dtype, count) };
}

function decodeBytes(raw, dtype, count) {
  const spec = DTYPES[dtype];
  // Copy into a fresh ArrayBuffer: aligned for every element type, and owned.
  const bytes = new Uint8Array(raw.byteLength);
  bytes.set(raw);
  const view = new DataView(bytes.buffer);
  if (dtype === 'bfloat16' || dtype === 'float16') {
    const out = new Float32Array(count);
    const widen = dtype === 'bfloat16' ? bf16BitsToFloat : f16BitsToFloat;
    for (let i = 0; i < count; i++) out[i] = widen(view.getUint16(2 * i, true));
    return out;
  }
  if (dtype === 'bool') {
    const out = new Uint8Array(count);
    for (let i = 0; i < count; i++) out[i] = bytes[i] ? 1 : 0;
    return out;
  }
  if (LITTLE_ENDIAN_HOST || spec.itemsize === 1) return new spec.Array(bytes.buffer, 0, count);
  // Big-endian host: read each element as little-endian.
  const out = new spec.Array(count);
  const getter = {
    float32: (o) => view.getFloat32(o, true),
    float64: (o) => view.getFloat64(o, true),
    int64: (o) => view.getBigInt64(o, true),
    int32: (o) => view.getInt32(o, true),
  }[dtype];
  for (let i = 0; i < count; i++) out[i] = getter(i * spec.itemsize);
  return out;
}

// ---- encode -----------------------------------------------------------------

function inferDtype(data) {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Uint8Array) return 'uint8';
  if (Array.isArray(data) && data.length > 0 && data.every((v) => typeof v === 'boolean')) return 'bool';
  if (Array.isArray(data) && data.length > 0 && data.every((v) => typeof v === 'bigint')) return 'int64';
  return 'float32';
}

/**
 * Encodes values into a Tensor message {dtype, shape, raw_contents} ready to
 * be sent with proto-loader (dtype as the enum name, shape as numbers,
 * raw_contents as a Buffer).
 *
 * `data`: a typed array or an array of numbers / booleans / BigInts.
 * `shape`: defaults to [data.length].
 * `dtype`: defaults from the typed array type (plain arrays: float32, or
 * bool / int64 for arrays of booleans / BigInts).
 */
function encodeTensor(data, shape, dtype) {
  if (data == null || typeof data.length !== 'number') {
    throw new TypeError('encodeTensor: data must be a typed array or an array');
  }
  const name = dtype === undefined ? inferDtype(data) : dtypeName(dtype);
  const spec = DTYPES[name];
  const dims = shape === undefined ? [data.length] : normalizeShape(shape);
  const count = numElements(dims);
  if (count !== data.length) {
    throw new RangeError(`encodeTensor: ${data.length} values do not fill shape [${dims.join(', ')}] (${count})`);
  }
  const buffer = Buffer.alloc(count * spec.itemsize);
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  for (let i = 0; i < count; i++) {
    const v = data[i];
    switch (name) {
      case 'float32':
        view.setFloat32(4 * i, Number(v), true);
        break;
      case 'float64':
        view.setFloat64(8 * i, Number(v), true);
        break;
      case 'float16':
        view.setUint16(2 * i, floatToF16Bits(Number(v)), true);
        break;
      case 'bfloat16':
        view.setUint16(2 * i, floatToBf16Bits(Number(v)), true);
        break;
      case 'int64':
        view.setBigInt64(8 * i, typeof v === 'bigint' ? v : BigInt(checkInteger(v, name)), true);
        break;
      case 'int32':
        view.setInt32(4 * i, checkRange(v, -0x80000000, 0x7fffffff, name), true);
        break;
      case 'int8':
        view.setInt8(i, checkRange(v, -128, 127, name));
        break;
      case 'uint8':
        view.setUint8(i, checkRange(v, 0, 255, name));
        break;
      case 'bool':
        view.setUint8(i, v ? 1 : 0);
        break;
      default:
        throw new TypeError(`unsupported dtype ${name}`);
    }
  }
  return { dtype: spec.enumName, shape: dims, raw_contents: buffer };
}

function checkInteger(v, dtype) {
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (!Number.isInteger(n)) throw new TypeError(`${dtype} tensor: ${String(v)} is not an integer`);
  return n;
}

function checkRange(v, lo, hi, dtype) {
  const n = checkInteger(v, dtype);
  if (n < lo || n > hi) throw new RangeError(`${dtype} tensor: ${n} is out of range [${lo}, ${hi}]`);
  return n;
}

// ---- helpers ----------------------------------------------------------------

/**
 * Nested plain arrays of a decoded tensor ({shape, data}), for printing or
 * JSON. int64 values become Numbers when safe, else decimal strings;
 * non-finite floats become null when `jsonSafe` is true.
 */
function toNested(decoded, { jsonSafe = false } = {}) {
  const { shape, data } = decoded;
  const convert = (v) => {
    if (typeof v === 'bigint') {
      return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
    }
    if (jsonSafe && !Number.isFinite(v)) return null;
    return v;
  };
  if (shape.length === 0) return convert(data[0]);
  let offset = 0;
  const build = (axis) => {
    const out = new Array(shape[axis]);
    for (let i = 0; i < shape[axis]; i++) {
      out[i] = axis === shape.length - 1 ? convert(data[offset++]) : build(axis + 1);
    }
    return out;
  };
  return build(0);
}

/**
 * Reassembles a streamed tensor from xaimesh.v1.TensorChunk messages (in any
 * order; the first chunk, byte_offset 0, carries dtype and shape) and decodes
 * it. Throws when pieces are missing, overlap or the total does not match.
 */
function assembleChunks(chunks) {
  if (!chunks || chunks.length === 0) throw new RangeError('assembleChunks: no chunks');
  const sorted = [...chunks].sort((a, b) => toDim(a.byte_offset, 'byte_offset') - toDim(b.byte_offset, 'byte_offset'));
  const first = sorted[0];
  const total = toDim(first.total_bytes, 'total_bytes');
  const out = new Uint8Array(total);
  let covered = 0;
  for (const chunk of sorted) {
    const offset = toDim(chunk.byte_offset, 'byte_offset');
    const data = toUint8(chunk.data);
    if (offset !== covered) {
      throw new RangeError(`assembleChunks: expected a chunk at byte ${covered}, got one at ${offset}`);
    }
    if (offset + data.byteLength > total) throw new RangeError('assembleChunks: chunk runs past total_bytes');
    out.set(data, offset);
    covered += data.byteLength;
  }
  if (covered !== total) throw new RangeError(`assembleChunks: got ${covered} of ${total} bytes`);
  return decodeTensor({ dtype: first.dtype, shape: first.shape, raw_contents: out });
}

module.exports = {
  DTYPES,
  dtypeName,
  dtypeEnumName,
  itemsize,
  normalizeShape,
  decodeTensor,
  encodeTensor,
  toNested,
  assembleChunks,
  // exposed for tests
  _internal: { bf16BitsToFloat, floatToBf16Bits, f16BitsToFloat, floatToF16Bits },
};
