/**
 * Codec benchmark: envelope and plain msgpack throughput on agent-like records, with and
 * without lz4, plus the lz4js API comparison behind the codec's choice of the raw block API and
 * the cost of the decode-side safety checks. Throughput is in MB/s of msgpack payload (the
 * logical size), the median of several timed repeats.
 */
import { compress as lz4FrameCompress, decompress as lz4FrameDecompress, compressBlock, decompressBlock } from 'lz4js';
import { crc32 } from 'node:zlib';
import { checkMsgpack, decode, decodeMsgpack, encode, encodeMsgpack } from '../src/codec/index.js';
import { lz4CompressBlock, lz4DecompressBlock } from '../src/codec/lz4.js';

/** Deterministic PRNG (mulberry32) so every run benchmarks the same data. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CAPABILITIES = [
  'summarize',
  'translate:en-fr',
  'translate:en-de',
  'embed',
  'chat',
  'code-review',
  'search',
  'ocr',
];
const MODELS = ['llama-3.1-8b', 'mistral-7b', 'qwen2.5-14b', 'phi-3-mini'];
const REGIONS = ['eu-west', 'eu-central', 'us-east', 'ap-south'];
const STATUSES = ['idle', 'busy', 'draining', 'offline'];

/** An agent registry record as the mesh replicates it: ~10 fields, a capability list, a meta object. */
export function agentRecord(rand: () => number, i: number): Record<string, unknown> {
  const hex = (n: number): string => Array.from({ length: n }, () => Math.floor(rand() * 16).toString(16)).join('');
  const caps = CAPABILITIES.filter(() => rand() < 0.5);
  return {
    id: `agent-${hex(16)}`,
    nodeId: `12D3KooW${hex(44)}`,
    name: `${caps[0] ?? 'worker'}-${i}`,
    kind: rand() < 0.7 ? 'llm-worker' : 'tool-runner',
    status: STATUSES[Math.floor(rand() * STATUSES.length)],
    version: `1.${Math.floor(rand() * 10)}.${Math.floor(rand() * 30)}`,
    startedAt: 1767225600000 + Math.floor(rand() * 86_400_000),
    lastHeartbeat: 1767312000000 + Math.floor(rand() * 60_000),
    load: Math.round(rand() * 1000) / 1000,
    tasksCompleted: Math.floor(rand() * 100_000),
    capabilities: caps,
    meta: {
      region: REGIONS[Math.floor(rand() * REGIONS.length)],
      gpu: rand() < 0.4,
      model: MODELS[Math.floor(rand() * MODELS.length)],
      maxTokens: 1024 * (1 + Math.floor(rand() * 32)),
    },
  };
}

const REPEATS = 7;
const TARGET_NS = 20_000_000; // per repeat
const WARMUP_NS = 60_000_000;

/** Median ns per call of `fn` over REPEATS timed runs, each sized to take ~TARGET_NS. */
function nsPerOp(fn: () => unknown): number {
  // Warm up for WARMUP_NS (so the JIT has tiered up before anything is timed), and size the
  // timed runs from the warm-up rate.
  let calls = 0;
  const warmStart = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < WARMUP_NS || calls < 100) {
    fn();
    calls++;
    if ((calls & 15) === 0 || calls < 100) elapsed = Number(process.hrtime.bigint() - warmStart);
  }
  const iterations = Math.max(1, Math.round((calls * TARGET_NS) / elapsed));
  const samples: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) fn();
    samples.push(Number(process.hrtime.bigint() - start) / iterations);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

const mbps = (bytes: number, ns: number): number => Math.round((bytes / ns) * 1000 * 10) / 10; // bytes/ns * 1e3 = MB/s
const opsPerSec = (ns: number): number => Math.round(1e9 / ns);

export async function benchCodec(): Promise<Record<string, unknown>[]> {
  const rand = prng(42);
  const record = agentRecord(rand, 0);
  const small = Array.from({ length: 4 }, (_, i) => agentRecord(rand, i + 1));
  const batch = Array.from({ length: 50 }, (_, i) => agentRecord(rand, i + 10));
  const cases: [string, unknown][] = [
    ['record', record],
    ['4-record batch', small],
    ['50-record batch', batch],
  ];
  const rows: Record<string, unknown>[] = [];
  let sink = 0;

  for (const [label, value] of cases) {
    const raw = encodeMsgpack(value, { canonical: false }).length;
    const variants: [string, () => Uint8Array, (b: Uint8Array) => unknown][] = [
      ['envelope lz4', () => encode(value), (b) => decode(b)],
      ['envelope no-lz4', () => encode(value, { compression: 'none' }), (b) => decode(b)],
      ['envelope canonical lz4', () => encode(value, { canonical: true }), (b) => decode(b)],
      ['msgpack fast', () => encodeMsgpack(value, { canonical: false }), (b) => decodeMsgpack(b)],
      ['msgpack canonical', () => encodeMsgpack(value), (b) => decodeMsgpack(b)],
    ];
    for (const [variant, enc, dec] of variants) {
      const wire = enc();
      const encNs = nsPerOp(() => (sink += enc().length));
      const decNs = nsPerOp(() => dec(wire));
      rows.push({
        name: `${label}: ${variant}`,
        msgpackBytes: raw,
        wireBytes: wire.length,
        ratio: Math.round((wire.length / raw) * 1000) / 1000,
        encodeMBps: mbps(raw, encNs),
        decodeMBps: mbps(raw, decNs),
        encodeOpsPerSec: opsPerSec(encNs),
        decodeOpsPerSec: opsPerSec(decNs),
      });
    }
    const json = Buffer.from(JSON.stringify(value));
    const jsonEncNs = nsPerOp(() => (sink += Buffer.from(JSON.stringify(value)).length));
    const jsonDecNs = nsPerOp(() => JSON.parse(json.toString()) as unknown);
    rows.push({
      name: `${label}: JSON baseline`,
      msgpackBytes: raw,
      wireBytes: json.length,
      ratio: Math.round((json.length / raw) * 1000) / 1000,
      encodeMBps: mbps(raw, jsonEncNs),
      decodeMBps: mbps(raw, jsonDecNs),
      encodeOpsPerSec: opsPerSec(jsonEncNs),
      decodeOpsPerSec: opsPerSec(jsonDecNs),
    });
  }

  // lz4js API choice: raw block (what the codec uses) vs frame, and our bounds-checked block
  // decoder vs lz4js's unchecked one; plus the decode-side checks on their own.
  for (const [label, value] of cases.slice(1)) {
    const payload = encodeMsgpack(value, { canonical: false });
    const n = payload.length;
    const block = lz4CompressBlock(payload)!.slice();
    const frame = lz4FrameCompress(payload);
    const out = new Uint8Array(n);
    const table = new Uint32Array(1 << 16);
    const dst = new Uint8Array(2 * n + 64);
    const lz4Rows: [string, number, number][] = [
      ['lz4 block (codec)', nsPerOp(() => lz4CompressBlock(payload)), nsPerOp(() => lz4DecompressBlock(block, out))],
      [
        'lz4 block, hash table cleared per call',
        nsPerOp(() => {
          table.fill(0);
          return compressBlock(payload, dst, 0, n, table);
        }),
        NaN,
      ],
      [
        'lz4 block, lz4js unchecked decompressBlock',
        NaN,
        nsPerOp(() => decompressBlock(block, out, 0, block.length, 0)),
      ],
      [
        'lz4 frame (lz4js compress/decompress)',
        nsPerOp(() => lz4FrameCompress(payload)),
        nsPerOp(() => lz4FrameDecompress(frame)),
      ],
      ['lz4 frame, decompress with size hint', NaN, nsPerOp(() => lz4FrameDecompress(frame, n))],
    ];
    for (const [variant, cNs, dNs] of lz4Rows) {
      rows.push({
        name: `${label}: ${variant}`,
        msgpackBytes: n,
        wireBytes: variant.includes('frame') ? frame.length : block.length,
        ratio: Math.round(((variant.includes('frame') ? frame.length : block.length) / n) * 1000) / 1000,
        encodeMBps: Number.isNaN(cNs) ? '' : mbps(n, cNs),
        decodeMBps: Number.isNaN(dNs) ? '' : mbps(n, dNs),
        encodeOpsPerSec: Number.isNaN(cNs) ? '' : opsPerSec(cNs),
        decodeOpsPerSec: Number.isNaN(dNs) ? '' : opsPerSec(dNs),
      });
    }
  }
  for (const [label, value] of cases) {
    const payload = encodeMsgpack(value, { canonical: false });
    const n = payload.length;
    const checkNs = nsPerOp(() => checkMsgpack(payload));
    const crcNs = nsPerOp(() => (sink += crc32(payload)));
    rows.push({
      name: `${label}: checkMsgpack pass (limits/depth)`,
      msgpackBytes: n,
      decodeMBps: mbps(n, checkNs),
      decodeOpsPerSec: opsPerSec(checkNs),
    });
    rows.push({
      name: `${label}: crc32`,
      msgpackBytes: n,
      decodeMBps: mbps(n, crcNs),
      decodeOpsPerSec: opsPerSec(crcNs),
    });
  }
  if (sink === -1) rows.push({ name: 'unreachable' });
  return rows;
}
