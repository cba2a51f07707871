/**
 * Codec fuzzing: hostile bytes must produce a typed CodecError (never another exception, never a
 * hang, never an unbounded allocation).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import { Decoder, DecodeError } from '@msgpack/msgpack';
import fc from 'fast-check';
import { decompressBlock as lz4jsDecompressBlock } from 'lz4js';
import {
  COMPRESSED_HEADER_BYTES,
  COMPRESSION_LZ4,
  CodecError,
  DEFAULT_LIMITS,
  HEADER_BYTES,
  checkMsgpack,
  decode,
  decodeMsgpack,
  encode,
  encodeMsgpack,
  type CodecErrorCode,
  type CodecLimits,
} from '../../src/codec/index.js';
import { lz4CompressBlock, lz4DecompressBlock } from '../../src/codec/lz4.js';

const SEED = process.env.FC_SEED === undefined ? 0xf022_5eed : Number(process.env.FC_SEED);
const RUNS = 1000;
const TIMEOUT = { timeout: 20_000 };

function property(prop: fc.IProperty<unknown>, numRuns = RUNS): void {
  try {
    fc.assert(prop, { numRuns, seed: SEED });
  } catch (err) {
    console.error(`fast-check property failed; reproduce with FC_SEED=${SEED}`);
    throw err;
  }
}

/** Runs `fn`; returns 'ok' or the CodecError code, and fails the test on any other exception. */
function outcome(fn: () => unknown): CodecErrorCode | 'ok' {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (err instanceof CodecError) return err.code;
    assert.fail(`expected only CodecError, got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  }
}

function reseal(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  const end = out.length - 4;
  new DataView(out.buffer).setUint32(end, crc32(out.subarray(0, end)));
  return out;
}

/** A well-formed (valid checksum) envelope around arbitrary payload bytes. */
function seal(payload: Uint8Array, uncompressedLength?: number): Uint8Array {
  const header = uncompressedLength === undefined ? HEADER_BYTES : COMPRESSED_HEADER_BYTES;
  const out = new Uint8Array(header + payload.length + 4);
  const view = new DataView(out.buffer);
  out.set([0x41, 0x4d, 1, 0, uncompressedLength === undefined ? 0 : COMPRESSION_LZ4 << 3]);
  view.setUint32(5, payload.length);
  if (uncompressedLength !== undefined) view.setUint32(9, uncompressedLength);
  out.set(payload, header);
  return reseal(out);
}

const NO_LIMITS: Partial<CodecLimits> = {
  maxStrLength: Infinity,
  maxBinLength: Infinity,
  maxArrayLength: Infinity,
  maxMapLength: Infinity,
  maxExtLength: Infinity,
  maxDepth: Infinity,
  maxValues: Infinity,
};

const valueArb = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.constant(null),
    fc.boolean(),
    fc.string({ unit: 'binary' }),
    fc.string({ minLength: 32, maxLength: 100 }),
    fc.integer(),
    fc.double(),
    fc.bigInt(),
    fc.uint8Array({ maxLength: 300 }),
    fc.date({ noInvalidDate: true }),
  ),
  value: fc.oneof({ depthSize: 'small', maxDepth: 5 }, tie('leaf'), tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 10 }),
  object: fc.dictionary(
    fc.string().filter((k) => k !== '__proto__'),
    tie('value'),
    { maxKeys: 6, noNullPrototype: true },
  ),
})).value;

const mutationsArb = fc.array(fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }), {
  minLength: 1,
  maxLength: 6,
});

function mutate(bytes: Uint8Array, mutations: { at: number; xor: number }[]): Uint8Array {
  const out = bytes.slice();
  for (const { at, xor } of mutations) out[at % out.length]! ^= xor;
  return out;
}

function agentBatch(n: number): unknown[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `agent-${i.toString(16).padStart(16, '0')}`,
    status: i % 3 === 0 ? 'busy' : 'idle',
    startedAt: 1767225600000 + i * 977,
    capabilities: ['summarize', 'embed', 'chat'].slice(0, 1 + (i % 3)),
    meta: { region: i % 2 ? 'eu-west' : 'us-east', load: (i % 10) / 10 },
  }));
}

describe('codec fuzz: arbitrary bytes', () => {
  it('random bytes never decode and only throw CodecError', TIMEOUT, () => {
    property(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
        assert.notEqual(
          outcome(() => decode(bytes)),
          'ok',
        );
      }),
    );
  });

  it('random bytes behind a valid magic and version fail the checksum', TIMEOUT, () => {
    property(
      fc.property(fc.uint8Array({ minLength: 10, maxLength: 2048 }), (tail) => {
        const bytes = new Uint8Array([0x41, 0x4d, 1, ...tail]);
        assert.equal(
          outcome(() => decode(bytes)),
          'CHECKSUM_MISMATCH',
        );
      }),
    );
  });

  it('random payloads with a valid checksum only throw CodecError (msgpack and lz4 paths)', TIMEOUT, () => {
    property(
      fc.property(
        fc.uint8Array({ maxLength: 1024 }),
        fc.option(fc.nat({ max: 1 << 16 }), { nil: undefined }),
        (payload, u) => {
          const result = outcome(() => decode(seal(payload, u)));
          assert.ok(
            ['ok', 'DESERIALIZATION_FAILED', 'COMPRESSION_FAILED', 'SIZE_LIMIT_EXCEEDED'].includes(result),
            result,
          );
          if (u === undefined) assert.notEqual(result, 'COMPRESSION_FAILED');
        },
      ),
    );
  });

  it('mutated msgpack with a valid checksum decodes or throws CodecError', TIMEOUT, () => {
    property(
      fc.property(valueArb, mutationsArb, (value, mutations) => {
        const bytes = mutate(encodeMsgpack(value), mutations);
        const result = outcome(() => decode(seal(bytes)));
        assert.ok(['ok', 'DESERIALIZATION_FAILED', 'SIZE_LIMIT_EXCEEDED'].includes(result), result);
      }),
    );
  });

  it('mutated lz4 blocks with a valid checksum decode or throw CodecError', TIMEOUT, () => {
    const payload = encodeMsgpack(agentBatch(40));
    const block = lz4CompressBlock(payload)!.slice();
    assert.ok(block.length < payload.length);
    assert.deepStrictEqual(decode(seal(block, payload.length)), agentBatch(40));
    property(
      fc.property(mutationsArb, fc.integer({ min: -3, max: 3 }), (mutations, du) => {
        const result = outcome(() => decode(seal(mutate(block, mutations), payload.length + du)));
        assert.ok(
          ['ok', 'DESERIALIZATION_FAILED', 'COMPRESSION_FAILED', 'SIZE_LIMIT_EXCEEDED'].includes(result),
          result,
        );
        if (du !== 0) assert.notEqual(result, 'ok', 'a wrong uncompressed length never decodes');
      }),
    );
  });

  it('checkMsgpack frames documents exactly like the msgpack Decoder', TIMEOUT, () => {
    // Raw library decoder, no limits: success means the framing is valid; a RangeError means
    // truncated/extra data; DecodeError is a semantic problem (key type, bad type byte, ...).
    const raw = new Decoder();
    const docs = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.tuple(valueArb, mutationsArb).map(([v, m]) => mutate(encodeMsgpack(v), m)),
      valueArb.map((v) => encodeMsgpack(v)),
    );
    property(
      fc.property(docs, (bytes) => {
        const scan = outcome(() => checkMsgpack(bytes, NO_LIMITS));
        let rawResult: 'ok' | 'range' | 'decode';
        try {
          raw.decode(bytes);
          rawResult = 'ok';
        } catch (err) {
          rawResult = err instanceof DecodeError ? 'decode' : 'range';
        }
        if (rawResult === 'ok') assert.equal(scan, 'ok', 'the scan must accept what the Decoder accepts');
        if (rawResult === 'range') assert.equal(scan, 'DESERIALIZATION_FAILED', 'the scan must reject bad framing');
        if (scan === 'ok') {
          // With the scan passed, decoding fails only for semantic reasons, as a CodecError.
          assert.ok(['ok', 'DESERIALIZATION_FAILED'].includes(outcome(() => decodeMsgpack(bytes, NO_LIMITS))));
        }
      }),
    );
  });
});

describe('codec fuzz: corrupted envelopes', () => {
  const small = encode({ id: 'agent-1', caps: ['a', 'b'], n: 42, blob: new Uint8Array([1, 2, 3]) });
  const compressed = encode(agentBatch(30));

  it('every single-bit flip is detected with the right code', TIMEOUT, () => {
    assert.equal(compressed[4], COMPRESSION_LZ4 << 3);
    let flips = 0;
    for (const wire of [small, compressed]) {
      for (let i = 0; i < wire.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const bad = wire.slice();
          bad[i]! ^= 1 << bit;
          const expected: CodecErrorCode =
            i < 2 ? 'DESERIALIZATION_FAILED' : i === 2 ? 'VERSION_INCOMPATIBLE' : 'CHECKSUM_MISMATCH';
          assert.equal(
            outcome(() => decode(bad)),
            expected,
            `byte ${i} bit ${bit}`,
          );
          flips++;
        }
      }
    }
    assert.equal(flips, (small.length + compressed.length) * 8);
  });

  it('random multi-byte corruption never decodes', TIMEOUT, () => {
    property(
      fc.property(fc.boolean(), mutationsArb, (useCompressed, mutations) => {
        const wire = useCompressed ? compressed : small;
        assert.notEqual(
          outcome(() => decode(mutate(wire, mutations))),
          'ok',
        );
      }),
    );
  });

  it('truncation at every prefix length is rejected', TIMEOUT, () => {
    for (const wire of [small, compressed]) {
      for (let n = 0; n < wire.length; n++) {
        const result = outcome(() => decode(wire.subarray(0, n)));
        assert.ok(result === 'DESERIALIZATION_FAILED' || result === 'CHECKSUM_MISMATCH', `prefix ${n}: ${result}`);
      }
      // Extra trailing bytes are rejected too.
      assert.equal(
        outcome(() => decode(new Uint8Array([...wire, 0]))),
        'CHECKSUM_MISMATCH',
      );
    }
  });

  it('wrong payload length fields are rejected even with a valid checksum', TIMEOUT, () => {
    for (const wire of [small, compressed]) {
      const view = new DataView(wire.buffer, wire.byteOffset);
      const actual = view.getUint32(5);
      const candidates = [0, 1, actual - 1, actual + 1, actual + 4, 2 * actual, 0x7fffffff, 0xffffffff];
      for (let p = 0; p < wire.length + 16; p++) candidates.push(p);
      for (const p of candidates) {
        if (p === actual) continue;
        const bad = wire.slice();
        new DataView(bad.buffer).setUint32(5, p);
        assert.equal(
          outcome(() => decode(reseal(bad))),
          'DESERIALIZATION_FAILED',
          `P=${p}`,
        );
      }
    }
  });

  it('wrong uncompressed length fields are rejected even with a valid checksum', TIMEOUT, () => {
    const u = new DataView(compressed.buffer).getUint32(9);
    const max = DEFAULT_LIMITS.maxDecompressedBytes;
    for (const declared of [0, 1, u - 1, u + 1, u * 2, max, max + 1, 0xffffffff]) {
      const bad = compressed.slice();
      new DataView(bad.buffer).setUint32(9, declared);
      const expected: CodecErrorCode = declared > max ? 'SIZE_LIMIT_EXCEEDED' : 'COMPRESSION_FAILED';
      assert.equal(
        outcome(() => decode(reseal(bad))),
        expected,
        `U=${declared}`,
      );
    }
  });
});

describe('codec fuzz: bombs and hostile headers', () => {
  it('a declared huge uncompressed size is refused before decompressing', TIMEOUT, () => {
    // The block itself is garbage: reaching the decompressor would give COMPRESSION_FAILED.
    const garbage = new Uint8Array([0xff, 0xff, 0xff, 0xff]);
    for (const declared of [0xffffffff, DEFAULT_LIMITS.maxDecompressedBytes + 1]) {
      const err = (() => {
        try {
          decode(seal(garbage, declared));
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      assert.ok(err instanceof CodecError);
      assert.equal(err.code, 'SIZE_LIMIT_EXCEEDED');
      assert.equal(err.details?.limit, 'maxDecompressedBytes');
    }
    assert.equal(
      outcome(() => decode(seal(garbage, 1000))),
      'COMPRESSION_FAILED',
    );
  });

  it('a real highly compressible payload above the limit is refused', TIMEOUT, () => {
    const bomb = encode({ blob: new Uint8Array(2 * 1024 * 1024) });
    assert.equal(bomb[4], COMPRESSION_LZ4 << 3);
    assert.ok(bomb.length < 16 * 1024, `2 MiB of zeros compresses to ${bomb.length} bytes`);
    assert.equal(
      outcome(() => decode(bomb, { maxDecompressedBytes: 1024 * 1024 })),
      'SIZE_LIMIT_EXCEEDED',
    );
    const ok = decode<{ blob: Uint8Array }>(bomb);
    assert.equal(ok.blob.length, 2 * 1024 * 1024);
  });

  it('an lz4 block that expands far beyond its declared length fails fast', TIMEOUT, () => {
    // One literal, then a match of offset 1 whose length bytes claim ~255 MB: lz4js's own
    // decompressBlock would loop for every one of those bytes.
    const block = new Uint8Array(1_000_004);
    block.set([0x1f, 0x00, 0x01, 0x00]);
    block.fill(0xff, 4, block.length - 1);
    assert.equal(
      outcome(() => decode(seal(block, 4096))),
      'COMPRESSION_FAILED',
    );
    assert.equal(
      outcome(() => lz4DecompressBlock(block, new Uint8Array(4096))),
      'COMPRESSION_FAILED',
    );
  });

  it('100k levels of nesting are refused by the depth limit, and decode iteratively without it', TIMEOUT, () => {
    const levels = 100_000;
    const arrays = new Uint8Array(levels + 1).fill(0x91);
    arrays[levels] = 0xc0;
    const maps = new Uint8Array(levels * 3 + 1);
    for (let i = 0; i < levels; i++) maps.set([0x81, 0xa1, 0x6b], i * 3);
    maps[levels * 3] = 0x01;
    for (const doc of [arrays, maps]) {
      const err = (() => {
        try {
          decodeMsgpack(doc);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      assert.ok(err instanceof CodecError);
      assert.equal(err.code, 'SIZE_LIMIT_EXCEEDED');
      assert.equal(err.details?.limit, 'maxDepth');
      assert.equal(err.details?.value, DEFAULT_LIMITS.maxDepth + 1);
      assert.equal(
        outcome(() => decode(seal(doc))),
        'SIZE_LIMIT_EXCEEDED',
      );
    }
    // The msgpack Decoder keeps its own stack, so even 100k levels cannot overflow the JS stack.
    let value = decodeMsgpack(arrays, { maxDepth: Infinity });
    let depth = 0;
    while (Array.isArray(value)) {
      value = value[0] as unknown;
      depth++;
    }
    assert.equal(depth, levels);
    assert.equal(value, null);
  });

  it('huge declared str/bin/array/map/ext lengths without the data are refused without allocating', TIMEOUT, () => {
    const huge = [0xff, 0xff, 0xff, 0xff];
    const medium = [0x00, 0x0f, 0x42, 0x40]; // 1_000_000: within or at the default limits
    const cases: [number[], CodecErrorCode][] = [
      [[0xdb, ...huge], 'SIZE_LIMIT_EXCEEDED'], // str 32
      [[0xc6, ...huge], 'SIZE_LIMIT_EXCEEDED'], // bin 32
      [[0xdd, ...huge], 'SIZE_LIMIT_EXCEEDED'], // array 32
      [[0xdf, ...huge], 'SIZE_LIMIT_EXCEEDED'], // map 32
      [[0xc9, ...huge, 0x01], 'SIZE_LIMIT_EXCEEDED'], // ext 32
      [[0xdb, ...medium, 0x61], 'DESERIALIZATION_FAILED'],
      [[0xc6, ...medium, 0x00], 'DESERIALIZATION_FAILED'],
      [[0xdd, ...medium, 0xc0], 'DESERIALIZATION_FAILED'],
      [[0xdf, ...medium, 0xc0], 'DESERIALIZATION_FAILED'],
      [[0xc8, 0xff, 0xff, 0x01], 'DESERIALIZATION_FAILED'], // ext 16
      [[0xdc, 0xff, 0xff], 'DESERIALIZATION_FAILED'], // array 16, no items
      [[0xde, 0xff, 0xff, 0xc0], 'DESERIALIZATION_FAILED'], // map 16
      [[0xda, 0xff], 'DESERIALIZATION_FAILED'], // str 16, truncated length
      [[0xd9, 0x20, 0x61], 'DESERIALIZATION_FAILED'], // str 8
      [[0x9f, 0xc0], 'DESERIALIZATION_FAILED'], // fixarray 15, one item
      [[0xcb, 0x00], 'DESERIALIZATION_FAILED'], // float 64, truncated
    ];
    for (const [bytes, code] of cases) {
      const doc = new Uint8Array(bytes);
      assert.equal(
        outcome(() => decodeMsgpack(doc)),
        code,
        `msgpack ${Buffer.from(doc).toString('hex')}`,
      );
      assert.equal(
        outcome(() => decode(seal(doc))),
        code,
        `envelope ${Buffer.from(doc).toString('hex')}`,
      );
    }
  });
});

describe('codec fuzz: lz4 blocks', () => {
  /** Compressible data: runs and repeats of a small alphabet. */
  const compressibleArb = fc
    .array(
      fc.oneof(
        fc.uint8Array({ maxLength: 40 }),
        fc.constantFrom('agent', 'status', 'idle').map((s) => Buffer.from(s)),
      ),
      {
        maxLength: 200,
      },
    )
    .chain((parts) =>
      fc.array(fc.nat({ max: Math.max(0, parts.length - 1) }), { maxLength: 300 }).map((ix) => ({ parts, ix })),
    )
    .map(({ parts, ix }) => Uint8Array.from(ix.flatMap((i) => [...(parts[i] ?? [])])));

  it('our decompressor inverts lz4js compressBlock and agrees with lz4js decompressBlock', TIMEOUT, () => {
    property(
      fc.property(compressibleArb, (input) => {
        const block = lz4CompressBlock(input)?.slice();
        if (block === undefined) return; // nothing to compress (tiny or no matches)
        const ours = new Uint8Array(input.length);
        assert.equal(lz4DecompressBlock(block, ours), input.length);
        assert.deepStrictEqual(ours, input);
        const theirs = new Uint8Array(input.length);
        assert.equal(lz4jsDecompressBlock(block, theirs, 0, block.length, 0), input.length);
        assert.deepStrictEqual(theirs, input);
      }),
    );
  });

  it('back-to-back compressions of similar inputs stay correct across window reuse', TIMEOUT, () => {
    // Each input goes below the previous one in a 1 MiB window; 3000 x 2 KiB wraps it ~6 times.
    const base = encodeMsgpack(agentBatch(8));
    for (let i = 0; i < 3000; i++) {
      const input = base.slice(0, base.length - (i % 7));
      input[i % input.length] = i & 0xff;
      const block = lz4CompressBlock(input);
      assert.ok(block !== undefined);
      const out = new Uint8Array(input.length);
      assert.equal(lz4DecompressBlock(block, out), input.length);
      assert.deepStrictEqual(out, input, `iteration ${i}`);
    }
  });

  it('random blocks either decompress within bounds or throw COMPRESSION_FAILED', TIMEOUT, () => {
    property(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.nat({ max: 4096 }), (block, size) => {
        const dst = new Uint8Array(size);
        let written = -1;
        const result = outcome(() => (written = lz4DecompressBlock(block, dst)));
        if (result === 'ok') assert.ok(written >= 0 && written <= size);
        else assert.equal(result, 'COMPRESSION_FAILED');
      }),
    );
  });
});
