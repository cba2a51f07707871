/**
 * Store benchmark: durable (fsynced) record writes per second with group commit under many
 * concurrent writers versus one write per LevelDB batch, load time of 100k records, snapshot
 * export/import, and the key-layout comparison (plain key prefixes vs `level` sublevels) behind
 * the store's choice. Records are ~200-byte values. Each figure is the median of several runs, in
 * fresh directories under the OS temp dir that are removed afterwards.
 *
 *   npx node --import tsx -e "import('./bench/store.ts').then(async m=>console.table(await m.benchStore()))"
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { Level } from 'level';
import { DurableStore } from '../src/store/index.js';

const VALUE_BYTES = 200;
const LOAD_RECORDS = 100_000;
const RUNS = 3;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

const r1 = (x: number): number => Math.round(x * 10) / 10;

function key(i: number): string {
  return `task/${i.toString(36).padStart(8, '0')}`;
}

function values(n: number): Uint8Array[] {
  // Half random, half repeated bytes: compressible like msgpack records, not trivially so.
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const v = new Uint8Array(VALUE_BYTES);
    randomFillSync(v, 0, VALUE_BYTES / 2);
    v.fill(i & 0xff, VALUE_BYTES / 2);
    out.push(v);
  }
  return out;
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'agentmesh-bench-store-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface WriteRun {
  opsPerSec: number;
  batches: number;
  meanBatch: number;
  p50LatencyMs: number;
  p99LatencyMs: number;
}

/** `writers` concurrent loops, each awaiting one single-record write at a time, `total` records. */
async function durableWrites(writers: number, total: number, maxBatchOps?: number): Promise<WriteRun> {
  const vals = values(Math.min(total, 4096));
  return withDir(async (dir) => {
    const store = await DurableStore.open(dir, maxBatchOps === undefined ? {} : { maxBatchOps });
    try {
      let next = 0;
      const latencies: number[] = [];
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: writers }, async () => {
          while (next < total) {
            const i = next++;
            const s = performance.now();
            await store.write({ records: [[key(i), vals[i % vals.length] as Uint8Array]] });
            latencies.push(performance.now() - s);
          }
        }),
      );
      const ms = performance.now() - t0;
      latencies.sort((a, b) => a - b);
      const st = store.stats;
      return {
        opsPerSec: (total / ms) * 1000,
        batches: st.batches,
        meanBatch: st.ops / st.batches,
        p50LatencyMs: latencies[Math.floor(latencies.length * 0.5)] as number,
        p99LatencyMs: latencies[Math.floor(latencies.length * 0.99)] as number,
      };
    } finally {
      await store.close();
    }
  });
}

async function writeRow(
  name: string,
  writers: number,
  total: number,
  maxBatchOps?: number,
): Promise<Record<string, unknown>> {
  const runs: WriteRun[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await durableWrites(writers, total, maxBatchOps));
  const med = (f: (r: WriteRun) => number): number => median(runs.map(f));
  return {
    case: name,
    writers,
    records: total,
    'ops/s': Math.round(med((r) => r.opsPerSec)),
    'ms (median)': r1((total / med((r) => r.opsPerSec)) * 1000),
    batches: Math.round(med((r) => r.batches)),
    'ops/batch': r1(med((r) => r.meanBatch)),
    'p50 ms': r1(med((r) => r.p50LatencyMs)),
    'p99 ms': r1(med((r) => r.p99LatencyMs)),
  };
}

async function fill(store: DurableStore, n: number): Promise<void> {
  const vals = values(4096);
  for (let i = 0; i < n; i += 5000) {
    const records: Array<[string, Uint8Array]> = [];
    for (let j = i; j < Math.min(n, i + 5000); j++) records.push([key(j), vals[j % vals.length] as Uint8Array]);
    await store.write({ records });
  }
}

async function loadAndSnapshotRows(): Promise<Array<Record<string, unknown>>> {
  return withDir(async (dir) => {
    const dbDir = join(dir, 'db');
    let store = await DurableStore.open(dbDir);
    await fill(store, LOAD_RECORDS);
    await store.close();
    const openMs: number[] = [];
    const loadMs: number[] = [];
    const iterMs: number[] = [];
    let count = 0;
    for (let i = 0; i < RUNS + 2; i++) {
      let t = performance.now();
      store = await DurableStore.open(dbDir);
      openMs.push(performance.now() - t);
      t = performance.now();
      count = (await store.loadRecords()).size;
      loadMs.push(performance.now() - t);
      t = performance.now();
      let n = 0;
      for await (const [k, v] of store.records()) n += k.length > 0 && v.length > 0 ? 1 : 0;
      iterMs.push(performance.now() - t);
      if (n !== count) throw new Error('records() and loadRecords() disagree');
      if (i < RUNS + 1) await store.close();
    }
    if (count !== LOAD_RECORDS) throw new Error(`loaded ${count} records`);
    const exportMs: number[] = [];
    const importMs: number[] = [];
    let bytes = 0;
    let rawBytes = 0;
    const file = join(dir, 'node.snap');
    for (let i = 0; i < RUNS; i++) {
      let t = performance.now();
      const info = await store.exportSnapshot(file);
      exportMs.push(performance.now() - t);
      bytes = info.bytes;
      rawBytes = info.rawBytes;
      t = performance.now();
      await DurableStore.importSnapshot(join(dir, `restored-${i}`), file);
      importMs.push(performance.now() - t);
    }
    await store.close();
    return [
      { case: `open store (${LOAD_RECORDS} records)`, records: count, 'ms (median)': r1(median(openMs)) },
      { case: 'load all records: loadRecords() -> Map', records: count, 'ms (median)': r1(median(loadMs)) },
      { case: 'load all records: for await records()', records: count, 'ms (median)': r1(median(iterMs)) },
      {
        case: 'snapshot export (zlib deflate, fsync)',
        records: count,
        'ms (median)': r1(median(exportMs)),
        bytes,
        rawBytes,
      },
      { case: 'snapshot import (verify + write)', records: count, 'ms (median)': r1(median(importMs)), bytes },
    ];
  });
}

/** The layout decision: the same 100k records through raw `level`, prefixed keys vs a sublevel. */
async function layoutRows(): Promise<Array<Record<string, unknown>>> {
  const vals = values(4096);
  const rows: Array<Record<string, unknown>> = [];
  for (const layout of ['prefix', 'sublevel'] as const) {
    const writeMs: number[] = [];
    const loadMs: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      await withDir(async (dir) => {
        const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' });
        await db.open();
        const sub = db.sublevel<string, Uint8Array>('r', { valueEncoding: 'view' });
        let t = performance.now();
        for (let i = 0; i < LOAD_RECORDS; i += 1000) {
          if (layout === 'prefix') {
            const ops = [];
            for (let j = i; j < i + 1000; j++)
              ops.push({ type: 'put' as const, key: `r:${key(j)}`, value: vals[j % 4096] as Uint8Array });
            await db.batch(ops, { sync: true });
          } else {
            const ops = [];
            for (let j = i; j < i + 1000; j++) {
              ops.push({ type: 'put' as const, sublevel: sub, key: key(j), value: vals[j % 4096] as Uint8Array });
            }
            await db.batch(ops, { sync: true });
          }
        }
        writeMs.push(performance.now() - t);
        t = performance.now();
        const it =
          layout === 'prefix'
            ? db.iterator({ gte: 'r:', lt: 'r;', highWaterMarkBytes: 1 << 20 })
            : // The sublevel passes classic-level's read-ahead option through; its types do not list it.
              sub.iterator({ gte: '', highWaterMarkBytes: 1 << 20 } as { gte: string });
        let n = 0;
        for (;;) {
          const batch = await it.nextv(1000);
          if (batch.length === 0) break;
          for (const [k] of batch) n += (layout === 'prefix' ? k.slice(2) : k).length > 0 ? 1 : 0;
        }
        await it.close();
        loadMs.push(performance.now() - t);
        if (n !== LOAD_RECORDS) throw new Error(`layout ${layout}: read ${n}`);
        await db.close();
      });
    }
    rows.push({
      case: `layout: raw level, ${layout === 'prefix' ? "key prefix 'r:'" : "sublevel 'r'"} (write 1000-op batches / load)`,
      records: LOAD_RECORDS,
      'ms (median)': r1(median(loadMs)),
      'write ms': r1(median(writeMs)),
    });
  }
  return rows;
}

export async function benchStore(): Promise<Record<string, unknown>[]> {
  return [
    await writeRow('durable writes, group commit', 1000, 100_000),
    await writeRow('durable writes, group commit', 100, 50_000),
    await writeRow('durable writes, one write per batch (maxBatchOps 1)', 1000, 5_000, 1),
    await writeRow('durable writes, one writer awaiting each', 1, 5_000),
    ...(await loadAndSnapshotRows()),
    ...(await layoutRows()),
  ];
}
