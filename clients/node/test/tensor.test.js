'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');

const {
  decodeTensor,
  encodeTensor,
  toNested,
  assembleChunks,
  dtypeName,
  itemsize,
  _internal,
} = require('../src/tensor');

// Little-endian bytes of values written with a DataView setter.
function leBytes(values, size, setter) {
  const buf = Buffer.alloc(values.length * size);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  values.forEach((v, i) => view[setter](i * size, v, true));
  return buf;
}

// A Buffer whose bytes start at an odd offset of its ArrayBuffer, as a
// slice of a received gRPC message may.
function misaligned(bytes) {
  const backing = Buffer.alloc(bytes.length + 3);
  bytes.copy(backing, 1);
  return backing.subarray(1, 1 + bytes.length);
}

test('dtype names: short, enum name and enum number', () => {
  assert.equal(dtypeName('float32'), 'float32');
  assert.equal(dtypeName('DATA_TYPE_BFLOAT16'), 'bfloat16');
  assert.equal(dtypeName(5), 'int64');
  assert.equal(itemsize('DATA_TYPE_FLOAT64'), 8);
  assert.throws(() => dtypeName('DATA_TYPE_UNSPECIFIED'), TypeError);
  assert.throws(() => dtypeName(0), TypeError);
  assert.throws(() => dtypeName('complex64'), TypeError);
});

test('float32 from a misaligned buffer is copied into an aligned typed array', () => {
  const values = [1.5, -2.25, 3.0e-3, 1e20, -0, 7];
  const raw = misaligned(leBytes(values, 4, 'setFloat32'));
  assert.notEqual(raw.byteOffset % 4, 0);
  const t = decodeTensor({ dtype: 'DATA_TYPE_FLOAT32', shape: ['2', '3'], raw_contents: raw });
  assert.equal(t.dtype, 'float32');
  assert.deepEqual(t.shape, [2, 3]);
  assert.ok(t.data instanceof Float32Array);
  assert.deepEqual(Array.from(t.data), values.map(Math.fround));
  // The result owns its bytes: changing the message does not change it.
  raw[0] ^= 0xff;
  assert.equal(t.data[0], 1.5);
  assert.deepEqual(toNested(t), [
    [1.5, -2.25, Math.fround(3.0e-3)],
    [Math.fround(1e20), -0, 7],
  ]);
});

test('float64, int32, int8, uint8', () => {
  const f64 = decodeTensor({ dtype: 4, shape: [3], raw_contents: misaligned(leBytes([Math.PI, -1e300, 0.1], 8, 'setFloat64')) });
  assert.ok(f64.data instanceof Float64Array);
  assert.deepEqual(Array.from(f64.data), [Math.PI, -1e300, 0.1]);

  const i32 = decodeTensor({ dtype: 'DATA_TYPE_INT32', shape: [2, 2], raw_contents: leBytes([-1, 2147483647, -2147483648, 0], 4, 'setInt32') });
  assert.ok(i32.data instanceof Int32Array);
  assert.deepEqual(Array.from(i32.data), [-1, 2147483647, -2147483648, 0]);

  const i8 = decodeTensor({ dtype: 'DATA_TYPE_INT8', shape: [3], raw_contents: Buffer.from([0xff, 0x80, 0x7f]) });
  assert.ok(i8.data instanceof Int8Array);
  assert.deepEqual(Array.from(i8.data), [-1, -128, 127]);

  const u8 = decodeTensor({ dtype: 'DATA_TYPE_UINT8', shape: [3], raw_contents: Buffer.from([0xff, 0x80, 0x7f]) });
  assert.ok(u8.data instanceof Uint8Array);
  assert.deepEqual(Array.from(u8.data), [255, 128, 127]);
});

test('int64 decodes to BigInt64Array, exact beyond 2^53', () => {
  const values = [9007199254740993n, -5n, 0n, -9223372036854775808n];
  const t = decodeTensor({ dtype: 'DATA_TYPE_INT64', shape: [4], raw_contents: misaligned(leBytes(values, 8, 'setBigInt64')) });
  assert.ok(t.data instanceof BigInt64Array);
  assert.deepEqual(Array.from(t.data), values);
  // JSON-friendly: safe values become numbers, others decimal strings.
  assert.deepEqual(toNested(t), ['9007199254740993', -5, 0, '-9223372036854775808']);
});

test('bool decodes to Uint8Array of 0 / 1', () => {
  const t = decodeTensor({ dtype: 'DATA_TYPE_BOOL', shape: [2, 2], raw_contents: Buffer.from([1, 0, 0, 2]) });
  assert.ok(t.data instanceof Uint8Array);
  assert.deepEqual(Array.from(t.data), [1, 0, 0, 1]);
});

test('bfloat16 is widened to Float32Array', () => {
  // bf16 bits: 1.0 = 0x3f80, -2.0 = 0xc000, 0.15625 = 0x3e20, +inf = 0x7f80, NaN = 0x7fc0
  const raw = misaligned(leBytes([0x3f80, 0xc000, 0x3e20, 0x7f80, 0x7fc0, 0x0001], 2, 'setUint16'));
  const t = decodeTensor({ dtype: 'DATA_TYPE_BFLOAT16', shape: [6], raw_contents: raw });
  assert.ok(t.data instanceof Float32Array);
  assert.deepEqual(Array.from(t.data.slice(0, 4)), [1, -2, 0.15625, Infinity]);
  assert.ok(Number.isNaN(t.data[4]));
  assert.equal(t.data[5], 2 ** -133); // smallest bf16 subnormal
  assert.deepEqual(toNested(t, { jsonSafe: true }).slice(3, 5), [null, null]);
});

test('float16 is widened to Float32Array (normals, subnormals, inf, NaN)', () => {
  // 1.0 = 0x3c00, -2.5 = 0xc100, 65504 = 0x7bff, 2^-24 = 0x0001, 2^-14 = 0x0400, -inf = 0xfc00, NaN = 0x7e00, -0 = 0x8000
  const raw = leBytes([0x3c00, 0xc100, 0x7bff, 0x0001, 0x0400, 0xfc00, 0x7e00, 0x8000], 2, 'setUint16');
  const t = decodeTensor({ dtype: 'DATA_TYPE_FLOAT16', shape: [2, 4], raw_contents: raw });
  assert.ok(t.data instanceof Float32Array);
  const v = Array.from(t.data);
  assert.deepEqual(v.slice(0, 6), [1, -2.5, 65504, 2 ** -24, 2 ** -14, -Infinity]);
  assert.ok(Number.isNaN(v[6]));
  assert.ok(Object.is(v[7], -0));
});

test('byte length is validated against shape and dtype', () => {
  assert.throws(
    () => decodeTensor({ dtype: 'DATA_TYPE_FLOAT32', shape: [2, 3], raw_contents: Buffer.alloc(20) }),
    /byte length 20 does not match shape \[2, 3\] of float32 \(6 x 4 = 24 bytes\)/,
  );
  assert.throws(() => decodeTensor({ dtype: 'DATA_TYPE_INT64', shape: [1], raw_contents: Buffer.alloc(4) }), RangeError);
  assert.throws(() => decodeTensor({ dtype: 'DATA_TYPE_FLOAT16', shape: [3], raw_contents: Buffer.alloc(7) }), RangeError);
  assert.throws(() => decodeTensor({ dtype: 'DATA_TYPE_FLOAT32', shape: [-1], raw_contents: Buffer.alloc(0) }), RangeError);
  assert.throws(() => decodeTensor({ dtype: 'DATA_TYPE_FLOAT32', shape: ['x'], raw_contents: Buffer.alloc(0) }), TypeError);
  assert.throws(() => decodeTensor({ dtype: 'DATA_TYPE_UNSPECIFIED', shape: [0], raw_contents: Buffer.alloc(0) }), TypeError);
});

test('empty and scalar tensors', () => {
  const empty = decodeTensor({ dtype: 'DATA_TYPE_FLOAT32', shape: [0, 16], raw_contents: Buffer.alloc(0) });
  assert.equal(empty.data.length, 0);
  assert.deepEqual(toNested(empty), []);
  const scalar = decodeTensor({ dtype: 'DATA_TYPE_FLOAT64', shape: [], raw_contents: leBytes([2.5], 8, 'setFloat64') });
  assert.deepEqual(scalar.shape, []);
  assert.equal(toNested(scalar), 2.5);
});

test('shape entries as Long-like objects and BigInts', () => {
  const longLike = { toNumber: () => 2 };
  const t = decodeTensor({ dtype: 'DATA_TYPE_UINT8', shape: [longLike, 1n], raw_contents: Buffer.from([3, 4]) });
  assert.deepEqual(t.shape, [2, 1]);
});

test('encode: typed arrays infer dtype and round-trip', () => {
  const cases = [
    [new Float32Array([1.5, -2, 3.25, 0]), 'DATA_TYPE_FLOAT32', Float32Array],
    [new Float64Array([Math.E, -1e-300]), 'DATA_TYPE_FLOAT64', Float64Array],
    [new BigInt64Array([2n ** 62n, -3n]), 'DATA_TYPE_INT64', BigInt64Array],
    [new Int32Array([-7, 8]), 'DATA_TYPE_INT32', Int32Array],
    [new Int8Array([-128, 127]), 'DATA_TYPE_INT8', Int8Array],
    [new Uint8Array([0, 255]), 'DATA_TYPE_UINT8', Uint8Array],
  ];
  for (const [data, enumName, ArrayType] of cases) {
    const msg = encodeTensor(data);
    assert.equal(msg.dtype, enumName);
    assert.deepEqual(msg.shape, [data.length]);
    assert.ok(Buffer.isBuffer(msg.raw_contents));
    const back = decodeTensor(msg);
    assert.ok(back.data instanceof ArrayType);
    assert.deepEqual(Array.from(back.data), Array.from(data));
  }
});

test('encode: little-endian byte layout', () => {
  const msg = encodeTensor([1, 2], [2], 'int32');
  assert.deepEqual([...msg.raw_contents], [1, 0, 0, 0, 2, 0, 0, 0]);
  const f = encodeTensor(new Float32Array([1]));
  assert.deepEqual([...f.raw_contents], [0, 0, 0x80, 0x3f]);
});

test('encode: bool masks from booleans or numbers', () => {
  const fromBooleans = encodeTensor([true, false, true, true], [2, 2]);
  assert.equal(fromBooleans.dtype, 'DATA_TYPE_BOOL');
  assert.deepEqual([...fromBooleans.raw_contents], [1, 0, 1, 1]);
  const fromNumbers = encodeTensor([1, 0, 5], [3], 'bool');
  assert.deepEqual([...fromNumbers.raw_contents], [1, 0, 1]);
  assert.deepEqual(Array.from(decodeTensor(fromNumbers).data), [1, 0, 1]);
});

test('encode: bfloat16 rounds to nearest even', () => {
  const { floatToBf16Bits, bf16BitsToFloat } = _internal;
  assert.equal(floatToBf16Bits(1), 0x3f80);
  assert.equal(floatToBf16Bits(-2), 0xc000);
  // 1 + 2^-8 is exactly half-way between 1 and 1 + 2^-7: ties to even (1).
  assert.equal(floatToBf16Bits(1 + 2 ** -8), 0x3f80);
  // 1 + 3 * 2^-8 is half-way between 1 + 2^-7 (odd) and 1 + 2^-6: to even.
  assert.equal(floatToBf16Bits(1 + 3 * 2 ** -8), 0x3f82);
  // Just above half-way rounds up.
  assert.equal(floatToBf16Bits(1 + 2 ** -8 + 2 ** -20), 0x3f81);
  assert.equal(floatToBf16Bits(Infinity), 0x7f80);
  assert.ok(Number.isNaN(bf16BitsToFloat(floatToBf16Bits(NaN))));
  const values = [0.1, -3.7, 1234.5, 1e-30, 3e38];
  const back = decodeTensor(encodeTensor(values, [5], 'bfloat16')).data;
  values.forEach((v, i) => assert.ok(Math.abs(back[i] - v) <= Math.abs(v) * 2 ** -8, `${v} -> ${back[i]}`));
});

test('encode: float16 rounding, subnormals, overflow', () => {
  const { floatToF16Bits, f16BitsToFloat } = _internal;
  assert.equal(floatToF16Bits(1), 0x3c00);
  assert.equal(floatToF16Bits(-2.5), 0xc100);
  assert.equal(floatToF16Bits(65504), 0x7bff);
  assert.equal(floatToF16Bits(65520), 0x7c00); // rounds up to inf
  assert.equal(floatToF16Bits(1e6), 0x7c00);
  assert.equal(floatToF16Bits(-1e6), 0xfc00);
  assert.equal(floatToF16Bits(2 ** -24), 0x0001);
  assert.equal(floatToF16Bits(2 ** -25), 0x0000); // tie to even: zero
  assert.equal(floatToF16Bits(1.5 * 2 ** -25), 0x0001);
  assert.equal(floatToF16Bits(2 ** -14), 0x0400);
  assert.equal(floatToF16Bits(-0), 0x8000);
  assert.equal(floatToF16Bits(1 + 2 ** -11), 0x3c00); // tie to even
  assert.equal(floatToF16Bits(1 + 3 * 2 ** -11), 0x3c02);
  assert.ok(Number.isNaN(f16BitsToFloat(floatToF16Bits(NaN))));
  // Every finite half round-trips exactly through float32.
  for (let bits = 0; bits < 0x10000; bits++) {
    const exponent = (bits >> 10) & 0x1f;
    if (exponent === 0x1f) continue;
    const value = f16BitsToFloat(bits);
    const again = floatToF16Bits(value);
    if (again !== bits) assert.fail(`0x${bits.toString(16)} -> ${value} -> 0x${again.toString(16)}`);
  }
});

test('encode: validation', () => {
  assert.throws(() => encodeTensor([1, 2, 3], [2, 2]), /3 values do not fill shape \[2, 2\] \(4\)/);
  assert.throws(() => encodeTensor([1.5], [1], 'int32'), TypeError);
  assert.throws(() => encodeTensor([300], [1], 'uint8'), RangeError);
  assert.throws(() => encodeTensor([1], [1], 'DATA_TYPE_UNSPECIFIED'), TypeError);
  assert.throws(() => encodeTensor(null), TypeError);
});

test('assembleChunks reassembles a streamed tensor in any order', () => {
  const values = new Float32Array(10).map((_, i) => i * 0.5);
  const whole = encodeTensor(values, [2, 5]).raw_contents;
  const chunk = (offset, end, first) => ({
    dtype: first ? 'DATA_TYPE_FLOAT32' : 'DATA_TYPE_UNSPECIFIED',
    shape: first ? ['2', '5'] : [],
    byte_offset: String(offset),
    total_bytes: String(whole.length),
    data: whole.subarray(offset, end),
  });
  const t = assembleChunks([chunk(16, 33, false), chunk(0, 16, true), chunk(33, 40, false)]);
  assert.deepEqual(t.shape, [2, 5]);
  assert.deepEqual(Array.from(t.data), Array.from(values));
  assert.throws(() => assembleChunks([chunk(0, 16, true), chunk(33, 40, false)]), /expected a chunk at byte 16/);
  assert.throws(() => assembleChunks([chunk(0, 16, true)]), /got 16 of 40 bytes/);
});
