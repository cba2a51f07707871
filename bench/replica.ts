import { gCounter, lwwRegister, orSet, RecordSchema, type RecordState } from '../src/crdt/index.js';
import { meshSchemaFor } from '../src/node/schemas.js';
import { type AgentProfile, agentSchema } from '../src/registry/agent-schema.js';
import { type Delta, Replica } from '../src/replica/index.js';
import { gc, median, round, type Row, timeRuns } from './util.js';

const CAPABILITIES = ['summarize', 'translate', 'search', 'code', 'review', 'plan', 'test', 'deploy'];
const TYPES = ['worker', 'planner', 'reviewer', 'tool'];
const NODE_ID = '12D3KooWQmpLqdLxSnKNdXeqGPwHZyqfyvBzSbw9mfV7cKwqz8Rv';

/** A record with one field of each op kind the target names: LWW, counter, OR-Set. */
const opsSchema = new RecordSchema('ops', { value: lwwRegister(), hits: gCounter, tags: orSet });
const opsReplica = (nodeId: string): Replica =>
  new Replica({ nodeId, schemaFor: (k) => (k.startsWith('ops/') ? opsSchema : undefined) });

type OpKind = 'lww' | 'counter' | 'orset';

/** Deltas of one kind on small values, spread over `keys` records, as a remote node makes them. */
function makeDeltas(kind: OpKind, n: number, keys: number): Delta[] {
  const source = opsReplica(NODE_ID);
  const deltas: Delta[] = [];
  for (let i = 0; i < n; i++) {
    deltas.push(
      source.mutate(`ops/${i % keys}`, (cur) => {
        const w = source.nodeId;
        switch (kind) {
          case 'lww':
            return opsSchema.delta({ value: opsSchema.fields.value.set(i % 100, source.clock.now(), w) });
          case 'counter':
            return opsSchema.delta({ hits: gCounter.increment(opsSchema.get(cur, 'hits'), w, 1) });
          case 'orset': {
            const tags = opsSchema.get(cur, 'tags');
            const c = CAPABILITIES[(i >> 1) % CAPABILITIES.length] as string;
            return opsSchema.delta({ tags: i % 2 ? orSet.remove(tags, c) : orSet.add(tags, c, w) });
          }
        }
      }),
    );
  }
  return deltas;
}

export async function benchReplica(): Promise<Row[]> {
  const rows: Row[] = [];
  const N = 200_000;
  for (const kind of ['lww', 'counter', 'orset'] as const) {
    const deltas = makeDeltas(kind, N, 10_000);
    const codec = opsReplica('node-codec');
    const wires = deltas.map((d) => codec.deltaToWire(d));
    const runs = timeRuns(5, () => {
      const r = opsReplica('node-target');
      for (const d of deltas) r.applyDelta(d);
    });
    const decodeRuns = timeRuns(5, () => {
      const r = opsReplica('node-target');
      for (const w of wires) r.applyDelta(r.deltaFromWire(w));
    });
    rows.push({
      bench: `remote delta apply (${kind})`,
      ops: N,
      'median ms': round(median(runs)),
      'ops/s': Math.round(N / (median(runs) / 1000)),
      'ops/s incl. validating decode': Math.round(N / (median(decodeRuns) / 1000)),
      target: '>= 200k/s',
    });
  }
  rows.push(memoryPerRecord(100_000));
  return rows;
}

/** A realistic agent registration plus some execution history, as its hosting node writes it. */
export function agentDelta(r: Replica, i: number): (cur: RecordState) => RecordState {
  return (cur) => {
    const t = r.clock.now();
    const w = r.nodeId;
    const profile: AgentProfile = {
      owner: w,
      name: `agent-${i}`,
      type: TYPES[i % TYPES.length] as string,
      capabilities: [0, 3, 6].map((k) => CAPABILITIES[(i + k) % CAPABILITIES.length] as string).sort(),
      state: 'RUNNING',
      health: 'healthy',
      load: i % 7,
      capacity: 8,
      heartbeat: 1_763_700_000_000 + i,
      meta: { region: 'eu-west', version: '1.4.2' },
      removed: false,
      registeredAt: t,
    };
    return agentSchema.delta({
      profile: agentSchema.fields.profile.set(profile, t, w),
      executions: gCounter.increment(agentSchema.get(cur, 'executions'), w, 1 + (i % 50)),
      successes: gCounter.increment(agentSchema.get(cur, 'successes'), w, 1 + (i % 40)),
    });
  };
}

/** Heap per agent record (12 profile fields + 4 counters), including its share of the Merkle tree. */
function memoryPerRecord(n: number): Row {
  gc();
  const before = process.memoryUsage().heapUsed;
  const r = new Replica({ nodeId: NODE_ID, schemaFor: meshSchemaFor });
  for (let i = 0; i < n; i++) r.mutate(`agent/${i.toString(36).padStart(12, '0')}`, agentDelta(r, i));
  r.merkle();
  gc();
  const used = process.memoryUsage().heapUsed - before;
  const sample = r.encodeRecord(`agent/${(0).toString(36).padStart(12, '0')}`).length;
  return {
    bench: 'memory per agent record (16 fields)',
    ops: n,
    'bytes/record incl. key, Merkle, dots': Math.round(used / n),
    'encoded bytes/record': sample,
    target: '<= 600 B (stretch 400)',
  };
}
