import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import {
  COMPRESSED_HEADER_BYTES,
  COMPRESSION_LZ4,
  CodecError,
  DEFAULT_COMPRESS_THRESHOLD,
  DEFAULT_LIMITS,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  HEADER_BYTES,
  MAX_ENCODE_DEPTH,
  checkMsgpack,
  decode,
  decodeMsgpack,
  encode,
  encodeMsgpack,
  isCodecError,
  type CodecErrorCode,
} from '../../src/codec/index.js';
import { MeshError } from '../../src/util/errors.js';

const SEED = process.env.FC_SEED === undefined ? 0x5eed_c0de : Number(process.env.FC_SEED);
const RUNS = 1000;

/** fc.assert with the fixed (or FC_SEED) seed; the seed is printed when the property fails. */
function property(prop: fc.IProperty<unknown>, numRuns = RUNS): void {
  try {
    fc.assert(prop, { numRuns, seed: SEED });
  } catch (err) {
    console.error(`fast-check property failed; reproduce with FC_SEED=${SEED}`);
    throw err;
  }
}

function codeOf(fn: () => unknown): CodecErrorCode | 'no error' {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CodecError, `expected a CodecError, got ${String(err)}`);
    return err.code;
  }
  return 'no error';
}

function throwsCode(fn: () => unknown, code: CodecErrorCode): CodecError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CodecError, `expected a CodecError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but nothing was thrown`);
}

/** Rewrites the CRC32 trailer so that a deliberately altered envelope passes the checksum. */
function reseal(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  const end = out.length - 4;
  new DataView(out.buffer).setUint32(end, crc32(out.subarray(0, end)));
  return out;
}

/** Builds an envelope by hand: header fields, payload, valid checksum. */
function envelope(
  payload: Uint8Array,
  opts: { flags?: number; major?: number; minor?: number; u?: number } = {},
): Uint8Array {
  const compressed = opts.u !== undefined;
  const header = compressed ? COMPRESSED_HEADER_BYTES : HEADER_BYTES;
  const out = new Uint8Array(header + payload.length + 4);
  const view = new DataView(out.buffer);
  out.set([0x41, 0x4d, opts.major ?? FORMAT_MAJOR, opts.minor ?? FORMAT_MINOR, opts.flags ?? (compressed ? 0x08 : 0)]);
  view.setUint32(5, payload.length);
  if (compressed) view.setUint32(9, opts.u!);
  out.set(payload, header);
  return reseal(out);
}

/** Values of the codec's value model that round-trip exactly (no -0, no undefined, no __proto__ keys). */
const valueArb = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.constant(null),
    fc.boolean(),
    fc.string({ unit: 'binary' }),
    fc.string({ unit: 'grapheme', minLength: 30, maxLength: 300 }),
    fc.integer(),
    fc.maxSafeInteger(),
    fc.double().map((d) => (Object.is(d, -0) ? 0 : d)),
    fc.bigInt(),
    fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n }),
    fc.uint8Array({ maxLength: 300 }),
    fc.date({ noInvalidDate: true }),
  ),
  value: fc.oneof({ depthSize: 'small', maxDepth: 6 }, tie('leaf'), tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 10 }),
  object: fc.dictionary(
    fc.string().filter((k) => k !== '__proto__'),
    tie('value'),
    { maxKeys: 8, noNullPrototype: true },
  ),
})).value;

/** A compressible value that crosses the default lz4 threshold. */
const largeValueArb = fc
  .array(
    fc.record(
      { id: fc.uuid(), n: fc.nat(), tags: fc.array(fc.constantFrom('a', 'bb', 'ccc'), { maxLength: 5 }) },
      { noNullPrototype: true },
    ),
    {
      minLength: 30,
      maxLength: 80,
    },
  )
  .map((rows) => ({ kind: 'batch', rows }));

function agent(i: number): Record<string, unknown> {
  return {
    id: `agent-${i.toString(16).padStart(16, '0')}`,
    name: `summarizer-${i}`,
    status: i % 3 === 0 ? 'busy' : 'idle',
    startedAt: 1767225600000 + i,
    load: 0.25,
    capabilities: ['summarize', 'embed', 'chat'],
    meta: { region: 'eu-west', gpu: i % 2 === 0 },
  };
}

describe('codec round-trips (fast-check)', () => {
  it('decode(encode(v)) deep-equals v', () => {
    property(fc.property(valueArb, (v) => assert.deepStrictEqual(decode(encode(v)), v)));
  });

  it('round-trips large values through lz4 and with compression forced on every size', () => {
    property(
      fc.property(largeValueArb, valueArb, (big, v) => {
        const wire = encode(big);
        assert.ok(encodeMsgpack(big).length >= DEFAULT_COMPRESS_THRESHOLD);
        assert.equal(wire[4], COMPRESSION_LZ4 << 3, 'a compressible batch above the threshold is compressed');
        assert.deepStrictEqual(decode(wire), big);
        assert.deepStrictEqual(decode(encode(v, { compressThreshold: 0 })), v);
      }),
      300,
    );
  });

  it('decodeMsgpack(encodeMsgpack(v)) deep-equals v, fast and canonical', () => {
    property(
      fc.property(valueArb, (v) => {
        assert.deepStrictEqual(decodeMsgpack(encodeMsgpack(v)), v);
        assert.deepStrictEqual(decodeMsgpack(encodeMsgpack(v, { canonical: false })), v);
      }),
    );
  });

  it('canonical encoding is deterministic whatever the key insertion order', () => {
    const reversed = (v: unknown): unknown => {
      if (Array.isArray(v)) return v.map(reversed);
      if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array) && !(v instanceof Date)) {
        return Object.fromEntries(
          Object.entries(v)
            .reverse()
            .map(([k, x]) => [k, reversed(x)]),
        );
      }
      return v;
    };
    property(
      fc.property(valueArb, (v) => {
        const bytes = encodeMsgpack(v);
        assert.deepStrictEqual(encodeMsgpack(reversed(v)), bytes);
        assert.deepStrictEqual(encodeMsgpack(decodeMsgpack(bytes)), bytes, 're-encoding decoded bytes is stable');
        assert.deepStrictEqual(encode(reversed(v), { canonical: true }), encode(v, { canonical: true }));
        assert.deepStrictEqual(encode(v), encode(v), 'the fast encoder is deterministic for the same object');
      }),
    );
  });

  it('keeps numbers as numbers and bigints as bigints across the 64-bit boundary', () => {
    const values = [2 ** 32, 2 ** 53 - 1, -(2 ** 53 - 1), Date.UTC(2026, 0, 1), 1.5, -0.25];
    const bigs = [0n, 1n, -1n, 2n ** 64n, -(2n ** 64n) - 1n, 2n ** 63n, 12345678901234567890123n];
    assert.deepStrictEqual(decode(encode(values)), values);
    assert.deepStrictEqual(decode(encode(bigs)), bigs);
    assert.deepStrictEqual(decode(encode({ when: new Date(1767225600123) })), { when: new Date(1767225600123) });
  });

  it('maps undefined to null and -0 to 0 (documented lossy cases)', () => {
    assert.deepStrictEqual(decode(encode({ a: undefined, b: [undefined], c: -0 })), { a: null, b: [null], c: 0 });
  });
});

describe('codec envelope layout and compression', () => {
  it('writes magic, version, flags, lengths and a CRC32 trailer', () => {
    const wire = encode({ hello: 'world' });
    const view = new DataView(wire.buffer, wire.byteOffset, wire.byteLength);
    assert.deepStrictEqual([...wire.subarray(0, 5)], [0x41, 0x4d, FORMAT_MAJOR, FORMAT_MINOR, 0]);
    const payloadLength = view.getUint32(5);
    assert.equal(wire.length, HEADER_BYTES + payloadLength + 4);
    assert.deepStrictEqual(
      wire.subarray(HEADER_BYTES, HEADER_BYTES + payloadLength),
      encodeMsgpack({ hello: 'world' }),
    );
    assert.equal(view.getUint32(wire.length - 4), crc32(wire.subarray(0, wire.length - 4)));
  });

  it('compresses only at or above the threshold, and records the uncompressed length', () => {
    // A string value of length L encodes to L + 3 (str16 header) + 2 bytes of array framing.
    const sized = (n: number): unknown => ['x'.repeat(n - 4)];
    assert.equal(encodeMsgpack(sized(DEFAULT_COMPRESS_THRESHOLD)).length, DEFAULT_COMPRESS_THRESHOLD);
    const below = encode(sized(DEFAULT_COMPRESS_THRESHOLD - 1));
    const at = encode(sized(DEFAULT_COMPRESS_THRESHOLD));
    assert.equal(below[4], 0, 'below the threshold: not compressed');
    assert.equal(below.length, HEADER_BYTES + DEFAULT_COMPRESS_THRESHOLD - 1 + 4);
    assert.equal(at[4], COMPRESSION_LZ4 << 3, 'at the threshold: compressed');
    assert.ok(at.length < 100, `highly repetitive payload shrinks (${at.length} bytes)`);
    assert.equal(new DataView(at.buffer).getUint32(9), DEFAULT_COMPRESS_THRESHOLD);
    assert.deepStrictEqual(decode(at), sized(DEFAULT_COMPRESS_THRESHOLD));
  });

  it('honours a custom threshold and compression: none', () => {
    const value = { rows: Array.from({ length: 5 }, (_, i) => agent(i)) };
    const raw = encodeMsgpack(value, { canonical: false }).length;
    assert.equal(encode(value, { compressThreshold: raw + 1 })[4], 0);
    assert.equal(encode(value, { compressThreshold: raw })[4], COMPRESSION_LZ4 << 3);
    assert.equal(encode(value, { compressThreshold: 0, compression: 'none' })[4], 0);
    assert.deepStrictEqual(decode(encode(value, { compressThreshold: 0 })), value);
  });

  it('stores incompressible payloads uncompressed even above the threshold', () => {
    let x = 0x9e3779b9;
    const noise = Uint8Array.from({ length: 8192 }, () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return x & 0xff;
    });
    const wire = encode(noise);
    assert.equal(wire[4], 0);
    assert.deepStrictEqual(decode(wire), noise);
  });

  it('decodes a newer minor version of the same major', () => {
    const payload = encodeMsgpack({ ok: true });
    assert.deepStrictEqual(decode(envelope(payload, { minor: 200 })), { ok: true });
    assert.deepStrictEqual(decode(envelope(payload, { flags: 0xe0 })), { ok: true }, 'reserved flag bits are ignored');
  });

  it('decodes Buffers and views at a non-zero offset', () => {
    const value = { a: [1, 2, 3], b: new Uint8Array([9, 8, 7]) };
    for (const wire of [encode(value), encode(value, { compressThreshold: 0 })]) {
      const framed = new Uint8Array(wire.length + 10);
      framed.set(wire, 7);
      assert.deepStrictEqual(decode(framed.subarray(7, 7 + wire.length)), value);
      assert.deepStrictEqual(decode(Buffer.from(wire)), value);
    }
  });

  it('round-trips a 50-record batch with lz4 and shrinks it', () => {
    const batch = Array.from({ length: 50 }, (_, i) => agent(i));
    const wire = encode(batch);
    assert.equal(wire[4], COMPRESSION_LZ4 << 3);
    assert.ok(wire.length < encodeMsgpack(batch).length / 2);
    assert.deepStrictEqual(decode(wire), batch);
  });
});

describe('codec errors', () => {
  it('CodecError is a MeshError with a stable code and JSON form', () => {
    const err = throwsCode(
      () => decode(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])),
      'DESERIALIZATION_FAILED',
    );
    assert.ok(err instanceof MeshError);
    assert.ok(isCodecError(err));
    assert.equal(err.name, 'CodecError');
    assert.equal(err.toJSON().code, 'DESERIALIZATION_FAILED');
  });

  it('SERIALIZATION_FAILED for values outside the value model', () => {
    let deep: unknown = 1;
    for (let i = 0; i < MAX_ENCODE_DEPTH + 1; i++) deep = [deep];
    const proto = JSON.parse('{"__proto__": 1}') as unknown;
    for (const bad of [
      () => 1,
      Symbol('s'),
      new Map([[1, 2]]),
      new Set([1]),
      { nested: [new Map()] },
      new Date(NaN),
      deep,
      proto,
    ]) {
      throwsCode(() => encode(bad), 'SERIALIZATION_FAILED');
      throwsCode(() => encodeMsgpack(bad), 'SERIALIZATION_FAILED');
    }
    // The encoder is still usable after a failure.
    assert.deepStrictEqual(decode(encode({ a: 1 })), { a: 1 });
  });

  it('the deepest value the encoder accepts decodes with the default limits', () => {
    let deep: unknown = [];
    for (let i = 0; i < MAX_ENCODE_DEPTH - 1; i++) deep = [deep];
    assert.deepStrictEqual(decode(encode(deep)), deep);
  });

  it('DESERIALIZATION_FAILED for bad magic, truncation, bad flags, bad lengths and bad msgpack', () => {
    const good = encode({ a: 1 });
    const payload = encodeMsgpack({ a: 1 });
    throwsCode(() => decode(new Uint8Array(0)), 'DESERIALIZATION_FAILED');
    throwsCode(() => decode(good.subarray(0, 3)), 'DESERIALIZATION_FAILED');
    throwsCode(() => decode(reseal(Uint8Array.from(good, (b, i) => (i === 0 ? 0x42 : b)))), 'DESERIALIZATION_FAILED');
    throwsCode(() => decode(good.subarray(0, 12)), 'DESERIALIZATION_FAILED');
    throwsCode(() => decode(envelope(payload, { flags: 0x01 })), 'DESERIALIZATION_FAILED'); // encoding 1
    throwsCode(() => decode(envelope(payload, { flags: 0x10 })), 'DESERIALIZATION_FAILED'); // compression 2
    const longer = envelope(payload);
    new DataView(longer.buffer).setUint32(5, payload.length + 1);
    throwsCode(() => decode(reseal(longer)), 'DESERIALIZATION_FAILED');
    throwsCode(() => decode(envelope(new Uint8Array([0xc1]))), 'DESERIALIZATION_FAILED');
    throwsCode(() => decode(envelope(new Uint8Array([0x91]))), 'DESERIALIZATION_FAILED'); // truncated array
    throwsCode(() => decode(envelope(new Uint8Array([0xc0, 0xc0]))), 'DESERIALIZATION_FAILED'); // trailing
    throwsCode(() => decode(envelope(new Uint8Array([0x81, 0xc0, 0x01]))), 'DESERIALIZATION_FAILED'); // nil key
    throwsCode(
      () => decode(envelope(new Uint8Array([0x81, 0xa9, ...Buffer.from('__proto__'), 0x01]))),
      'DESERIALIZATION_FAILED',
    );
  });

  it('rejects non-canonical bigint extensions', () => {
    assert.equal(decodeMsgpack(new Uint8Array([0xd4, 0x01, 0x00])), 0n);
    assert.equal(decodeMsgpack(new Uint8Array([0xd5, 0x01, 0x01, 0x05])), -5n);
    throwsCode(() => decodeMsgpack(new Uint8Array([0xd4, 0x01, 0x01])), 'DESERIALIZATION_FAILED'); // -0
    throwsCode(() => decodeMsgpack(new Uint8Array([0xd5, 0x01, 0x00, 0x00])), 'DESERIALIZATION_FAILED'); // leading 0
    throwsCode(() => decodeMsgpack(new Uint8Array([0xd5, 0x01, 0x02, 0x05])), 'DESERIALIZATION_FAILED'); // sign 2
  });

  it('SCHEMA_VALIDATION_FAILED when validate returns false or throws', () => {
    const wire = encode({ id: 'a', n: 1 });
    const isRecord = (v: unknown): v is { id: string; n: number } =>
      typeof v === 'object' && v !== null && typeof (v as { id?: unknown }).id === 'string';
    const typed: { id: string; n: number } = decode(wire, { validate: isRecord });
    assert.equal(typed.id, 'a');
    throwsCode(() => decode(encode({ id: 1 }), { validate: isRecord }), 'SCHEMA_VALIDATION_FAILED');
    const err = throwsCode(
      () =>
        decode(wire, {
          validate: (v: unknown): v is never => {
            throw new Error(`nope ${String(v)}`);
          },
        }),
      'SCHEMA_VALIDATION_FAILED',
    );
    assert.ok(err.cause instanceof Error);
  });

  it('COMPRESSION_FAILED for a corrupt lz4 block or a wrong uncompressed length', () => {
    const wire = encode(Array.from({ length: 20 }, (_, i) => agent(i)));
    assert.equal(wire[4], COMPRESSION_LZ4 << 3);
    const view = new DataView(wire.buffer);
    const u = view.getUint32(9);
    for (const delta of [-1, 1, 1000]) {
      const bad = wire.slice();
      new DataView(bad.buffer).setUint32(9, u + delta);
      throwsCode(() => decode(reseal(bad)), 'COMPRESSION_FAILED');
    }
    // A match offset pointing before the start of the output.
    throwsCode(() => decode(envelope(new Uint8Array([0x10, 0x61, 0x05, 0x00]), { u: 6 })), 'COMPRESSION_FAILED');
    // Literals running past the end of the block.
    throwsCode(() => decode(envelope(new Uint8Array([0xf0, 0xff, 0xff]), { u: 600 })), 'COMPRESSION_FAILED');
  });

  it('CHECKSUM_MISMATCH when any covered byte changes', () => {
    const wire = encode({ a: 'b' });
    for (const i of [3, 4, 5, HEADER_BYTES, wire.length - 1]) {
      const bad = wire.slice();
      bad[i]! ^= 0x01;
      throwsCode(() => decode(bad), 'CHECKSUM_MISMATCH');
    }
  });

  it('VERSION_INCOMPATIBLE for any other major version', () => {
    const payload = encodeMsgpack(1);
    for (const major of [0, 2, 255]) {
      const err = throwsCode(() => decode(envelope(payload, { major })), 'VERSION_INCOMPATIBLE');
      assert.equal(err.details?.major, major);
    }
  });

  it('SIZE_LIMIT_EXCEEDED for every limit, on encode and decode', () => {
    const value = { s: 'x'.repeat(300), b: new Uint8Array(300), a: [1, 2, 3, 4], m: { a: 1, b: 2, c: 3 } };
    const wire = encode(value);
    const limit = (fn: () => unknown, name: string): void => {
      assert.equal(throwsCode(fn, 'SIZE_LIMIT_EXCEEDED').details?.limit, name);
    };
    limit(() => decode(wire, { maxEnvelopeBytes: wire.length - 1 }), 'maxEnvelopeBytes');
    limit(() => decode(wire, { maxDecompressedBytes: 100 }), 'maxDecompressedBytes');
    limit(() => decode(wire, { maxStrLength: 299 }), 'maxStrLength');
    limit(() => decode(wire, { maxBinLength: 299 }), 'maxBinLength');
    limit(() => decode(wire, { maxArrayLength: 3 }), 'maxArrayLength');
    limit(() => decode(wire, { maxMapLength: 3 }), 'maxMapLength');
    limit(() => decode(wire, { maxDepth: 1 }), 'maxDepth');
    limit(() => decode(wire, { maxValues: 10 }), 'maxValues');
    limit(() => decode(encode(123n), { maxExtLength: 1 }), 'maxExtLength');
    limit(() => decodeMsgpack(encodeMsgpack(value), { maxDecompressedBytes: 10 }), 'maxDecompressedBytes');
    limit(() => encode(value, { maxEnvelopeBytes: 100 }), 'maxEnvelopeBytes');
    limit(() => encode(value, { maxDecompressedBytes: 100 }), 'maxDecompressedBytes');
    // Exactly at each limit is fine.
    assert.deepStrictEqual(
      decode(wire, {
        maxEnvelopeBytes: wire.length,
        maxStrLength: 300,
        maxBinLength: 300,
        maxArrayLength: 4,
        maxMapLength: 4,
        maxDepth: 2,
      }),
      value,
    );
    assert.equal(DEFAULT_LIMITS.maxDepth, MAX_ENCODE_DEPTH);
  });

  it('reaches every error code', () => {
    const seen = new Set<string>();
    const payload = encodeMsgpack(1);
    const compressed = encode('z'.repeat(5000));
    const badU = compressed.slice();
    new DataView(badU.buffer).setUint32(9, 4999);
    const flipped = encode(1);
    flipped[HEADER_BYTES]! ^= 0xff;
    for (const fn of [
      () => encode(() => 1),
      () => decode(new Uint8Array(2)),
      () => decode(encode(1), { validate: (v): v is string => typeof v === 'string' }),
      () => decode(reseal(badU)),
      () => decode(flipped),
      () => decode(envelope(payload, { major: 9 })),
      () => decode(encode(1), { maxEnvelopeBytes: 5 }),
    ]) {
      seen.add(codeOf(fn));
    }
    assert.deepStrictEqual([...seen].sort(), [
      'CHECKSUM_MISMATCH',
      'COMPRESSION_FAILED',
      'DESERIALIZATION_FAILED',
      'SCHEMA_VALIDATION_FAILED',
      'SERIALIZATION_FAILED',
      'SIZE_LIMIT_EXCEEDED',
      'VERSION_INCOMPATIBLE',
    ]);
  });

  it('checkMsgpack accepts what the encoder writes and rejects trailing bytes', () => {
    const bytes = encodeMsgpack({ a: [1, 'two', new Uint8Array(3), { b: null }] });
    checkMsgpack(bytes);
    throwsCode(() => checkMsgpack(new Uint8Array([...bytes, 0])), 'DESERIALIZATION_FAILED');
  });
});
