/**
 * Crash safety of DurableReplica with real processes: a child runs several concurrent writers that
 * each loop `await durable.mutate(...)` on note records (set a title, increment a G-Counter, add an
 * OR-Set tag) and is SIGKILLed at a random moment. After every kill the parent reopens the data
 * directory with DurableReplica and checks that
 *
 * - every acknowledged mutation is there (its dot is claimed, its effect is in the record), and
 *   `nextSeq` is past every acknowledged seq;
 * - the persisted dots and records describe exactly the same mutations: a record holds the
 *   effect of precisely the attempted mutations whose dot was persisted (they ride in one atomic
 *   batch), so nothing is half-written and nothing unannounced appears;
 * - every stored record decodes and re-encodes to the same bytes, the clock resumes after every
 *   persisted timestamp, and the next child starts at the `nextSeq` the parent saw.
 *
 * The child runs again on the same directory after each check, so the keyspace keeps growing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DurableReplica } from '../../src/replica/index.js';
import { noteReplica, noteSchema, prng } from '../helpers/replicas.js';
import { runUntilKilled } from '../helpers/crash-child.js';

const CHILD = fileURLToPath(new URL('../fixtures/replica-crash-child.ts', import.meta.url));
const NODE = 'crash-node'; // the child's node id
const RUNS = 20;
const WRITERS = 6;
const SEED = Number(process.env.REPLICA_CRASH_SEED ?? 0x5eed);

type Field = 'title' | 'hits' | 'tags';
interface Mutation {
  seq: number;
  key: string;
  field: Field;
  /** The title (the seq as a string), the increment, or the tag. */
  value: string;
}

function parseMutation(rest: string): Mutation {
  const [seq, key, field, value, extra] = rest.split(' ');
  assert.ok(seq !== undefined && key !== undefined && value !== undefined && extra === undefined, `bad line: ${rest}`);
  assert.ok(field === 'title' || field === 'hits' || field === 'tags', `bad field: ${rest}`);
  return { seq: Number(seq), key, field, value };
}

interface RunResult {
  start: number;
  tried: Map<number, Mutation>;
  acked: Mutation[];
}

async function runChild(dir: string, seed: number, run: number, killAfterMs: number): Promise<RunResult> {
  const lines = await runUntilKilled([CHILD, 'crash', dir, String(WRITERS), String(seed), String(run)], killAfterMs);
  const result: RunResult = { start: -1, tried: new Map(), acked: [] };
  for (const line of lines) {
    if (line.startsWith('try ')) {
      const m = parseMutation(line.slice(4));
      assert.ok(!result.tried.has(m.seq), `seq ${m.seq} used twice in one run`);
      result.tried.set(m.seq, m);
    } else if (line.startsWith('ack ')) {
      const m = parseMutation(line.slice(4));
      assert.deepEqual(result.tried.get(m.seq), m, `ack without a matching try: ${line}`);
      result.acked.push(m);
    } else if (line.startsWith('start ')) {
      result.start = Number(line.slice(6));
    } else {
      assert.equal(line, '', `unexpected child output: ${line}`);
    }
  }
  return result;
}

/** What a record must hold given the durable mutations that touched it. */
interface Expected {
  hits: number;
  tags: Set<string>;
  titleSeq: number;
}

function expectedState(durable: Map<number, Mutation>): Map<string, Expected> {
  const out = new Map<string, Expected>();
  for (const m of durable.values()) {
    let e = out.get(m.key);
    if (e === undefined) {
      e = { hits: 0, tags: new Set(), titleSeq: 0 };
      out.set(m.key, e);
    }
    if (m.field === 'hits') e.hits += Number(m.value);
    else if (m.field === 'tags') e.tags.add(m.value);
    else e.titleSeq = Math.max(e.titleSeq, m.seq);
  }
  return out;
}

test('every acknowledged mutation survives SIGKILL at a random moment', { timeout: 90_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'agentmesh-replica-crash-'));
  const rand = prng(SEED);
  // Every mutation known to be durable (its dot was found on disk after a kill), by seq. A tried
  // mutation that did not make it is dropped: the next child reuses its seq for something else.
  const durable = new Map<number, Mutation>();
  const ackedHits = new Map<string, number>(); // per key, over all runs
  let expectedStart = 1;
  let totalAcks = 0;
  let totalTried = 0;
  let lostUnacked = 0;
  let records = 0;
  try {
    for (let run = 0; run < RUNS; run++) {
      const killAfter = 30 + Math.floor(rand() * 271);
      const r = await runChild(dir, Math.floor(rand() * 2 ** 31), run, killAfter);
      const where = `run ${run} (seed ${SEED}, killed ${killAfter} ms after the first ack)`;
      assert.ok(r.acked.length > 0, `${where}: no acks`);
      assert.equal(r.start, expectedStart, `${where}: child started at seq ${r.start}`);
      totalAcks += r.acked.length;
      totalTried += r.tried.size;

      const replica = noteReplica(NODE);
      const { durable: reopened, loaded } = await DurableReplica.open(replica, dir);
      try {
        assert.equal(reopened.store.recovery.dataLoss, false, reopened.store.recovery.messages.join('\n'));
        const dots = replica.dots;
        // Local seqs are issued without gaps, and a batch carries every seq issued before it.
        assert.deepEqual(dots.gaps(NODE), [], `${where}: gaps in the persisted dots`);
        for (const m of r.acked) {
          assert.ok(
            dots.has(NODE, m.seq),
            `${where}: acknowledged seq ${m.seq} (${m.key} ${m.field}) is not in the dots`,
          );
        }
        const maxAcked = Math.max(...r.acked.map((m) => m.seq));
        assert.ok(replica.nextSeq > maxAcked, `${where}: nextSeq ${replica.nextSeq} <= acknowledged ${maxAcked}`);
        for (const m of r.tried.values()) {
          if (dots.has(NODE, m.seq)) durable.set(m.seq, m);
          else lostUnacked++;
        }
        // The dots claim nothing the children did not attempt (and nothing lost earlier).
        const unannounced: number[] = [];
        for (let seq = 1; seq < replica.nextSeq && unannounced.length < 10; seq++) {
          if (!durable.has(seq)) unannounced.push(seq);
        }
        assert.deepEqual(unannounced, [], `${where}: dots claim seqs no child announced (tried ${r.tried.size})`);
        assert.equal(durable.size, replica.nextSeq - 1, `${where}: dots and durable mutations disagree`);
        expectedStart = replica.nextSeq;

        // Records hold exactly the effects of the durable mutations.
        const expected = expectedState(durable);
        assert.deepEqual([...replica.keys()].sort(), [...expected.keys()].sort(), `${where}: key sets differ`);
        assert.equal(loaded, expected.size);
        for (const [key, e] of expected) {
          const value = noteSchema.value(replica.get(key) as never);
          assert.equal(value.hits, e.hits, `${where}: ${key} hits`);
          assert.deepEqual(new Set(value.tags), e.tags, `${where}: ${key} tags`);
          const title = e.titleSeq === 0 ? undefined : String(e.titleSeq);
          assert.equal(value.title, title, `${where}: ${key} title (the latest durable title must win)`);
        }
        // The acknowledged view, spelled out (implied by the exact check above).
        for (const m of r.acked) {
          if (m.field === 'hits') ackedHits.set(m.key, (ackedHits.get(m.key) ?? 0) + Number(m.value));
        }
        for (const [key, hits] of ackedHits) {
          const value = noteSchema.value(replica.get(key) as never);
          assert.ok(value.hits >= hits, `${where}: ${key} has ${value.hits} hits, ${hits} were acknowledged`);
        }
        for (const m of r.acked) {
          const value = noteSchema.value(replica.get(m.key) as never);
          if (m.field === 'tags') assert.ok(value.tags.includes(m.value), `${where}: acked tag ${m.value} missing`);
          if (m.field === 'title') assert.ok(Number(value.title) >= m.seq, `${where}: acked title ${m.seq} lost`);
        }

        // Every stored record decodes and is byte-identical to its canonical encoding.
        let maxTs = 0;
        records = 0;
        for await (const [key, bytes] of reopened.store.records()) {
          const state = replica.decodeRecord(key, bytes);
          assert.deepEqual(Buffer.from(replica.encodeRecord(key, state)), Buffer.from(bytes), `${where}: ${key}`);
          noteSchema.visit(state, {
            writer: (w) => assert.equal(w, NODE),
            timestamp: (ts) => (maxTs = Math.max(maxTs, ts)),
          });
          records++;
        }
        assert.ok(replica.clock.now() > maxTs, `${where}: clock resumed before a persisted timestamp`);
      } finally {
        await reopened.close();
      }
    }
    t.diagnostic(
      `seed ${SEED}: ${RUNS} kills, ${totalTried} mutations tried, ${totalAcks} acknowledged, ` +
        `${lostUnacked} unacknowledged lost, ${durable.size} durable, ${records} records`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
