/**
 * Crash safety with real processes: a child appends with several concurrent writers (group commit)
 * and is SIGKILLed at a random moment; after every kill the parent reopens the store and checks that
 * every acknowledged put is present with its exact value, every acknowledged delete is gone, every
 * stored value validates, and the `seq` meta covers every acknowledged key.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DurableStore } from '../../src/store/index.js';
import { checkRecord, decodeSeq, recordValue } from '../fixtures/store-records.js';
import { runUntilKilled } from '../helpers/crash-child.js';

const CHILD = fileURLToPath(new URL('../fixtures/store-crash-child.ts', import.meta.url));
const RUNS = 20;
const WRITERS = 8;

function seqOf(key: string): number {
  return Number(key.slice(key.indexOf('/') + 1));
}

interface RunResult {
  start: number;
  acked: string[];
  begun: string[][];
  deleting: string[];
  deleted: string[];
}

async function runChild(dir: string): Promise<RunResult> {
  const lines = await runUntilKilled([CHILD, dir, String(WRITERS)], 50 + Math.floor(Math.random() * 351));
  const result: RunResult = { start: -1, begun: [], acked: [], deleting: [], deleted: [] };
  for (const line of lines) {
    if (line.startsWith('ack ')) result.acked.push(line.slice(4));
    else if (line.startsWith('del ')) result.deleted.push(line.slice(4));
    else if (line.startsWith('deleting ')) result.deleting.push(line.slice(9));
    else if (line.startsWith('begin ')) result.begun.push(line.slice(6).split(','));
    else if (line.startsWith('start ')) result.start = Number(line.slice(6));
    else assert.equal(line, '', `unexpected child output: ${line}`);
  }
  return result;
}

test('every acknowledged write survives SIGKILL at a random moment', { timeout: 55_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'agentmesh-store-crash-'));
  try {
    const present = new Set<string>(); // acknowledged puts: must be there with their value
    const gone = new Set<string>(); // acknowledged deletes: must be absent
    let maxAcked = -1;
    let totalAcks = 0;
    let stored = 0;
    let whole = 0;
    for (let run = 0; run < RUNS; run++) {
      const r = await runChild(dir);
      assert.ok(r.acked.length > 0, `run ${run}: no acks`);
      assert.ok(r.start > maxAcked, `run ${run}: started at ${r.start}, but ${maxAcked} was acknowledged before`);
      totalAcks += r.acked.length;
      for (const k of r.acked) {
        present.add(k);
        maxAcked = Math.max(maxAcked, seqOf(k));
      }
      // A delete issued but not acknowledged when the child died may or may not have happened.
      for (const k of r.deleting) present.delete(k);
      for (const k of r.deleted) gone.add(k);

      const store = await DurableStore.open(dir);
      try {
        // A kill tears at most the tail of LevelDB's log, which recovery drops silently by design;
        // anything reported as corruption would be real loss (or a false alarm of the store).
        assert.equal(store.recovery.dataLoss, false, store.recovery.messages.join('\n'));
        const all = await store.loadRecords();
        stored = all.size;
        for (const k of present) {
          const v = all.get(k);
          assert.ok(v !== undefined, `run ${run}: acknowledged ${k} is missing`);
          assert.deepEqual(Buffer.from(v), Buffer.from(recordValue(k)), `run ${run}: ${k} has the wrong value`);
        }
        for (const k of gone) assert.ok(!all.has(k), `run ${run}: deleted ${k} came back`);
        // Each write is atomic: all of its keys or none (keys whose delete was issued aside).
        const touched = new Set([...r.deleting, ...r.deleted]);
        for (const keys of r.begun) {
          const kept = keys.filter((k) => !touched.has(k));
          const found = kept.filter((k) => all.has(k)).length;
          assert.ok(found === 0 || found === kept.length, `run ${run}: write ${keys.join(',')} is torn`);
          if (found > 0 && kept.length > 1) whole += 1;
        }
        for (const [k, v] of all) assert.doesNotThrow(() => checkRecord(k, v), `run ${run}: ${k} does not validate`);
        const seq = decodeSeq(await store.getMeta('seq'));
        assert.ok(seq >= maxAcked, `run ${run}: seq meta ${seq} is behind acknowledged ${maxAcked}`);
      } finally {
        await store.close();
      }
    }
    t.diagnostic(
      `${RUNS} kills, ${totalAcks} acknowledged puts, ${gone.size} acknowledged deletes, ${stored} records stored, ${whole} multi-key writes found whole`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
