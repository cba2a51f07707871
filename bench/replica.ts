import { gCounter, orSet, type RecordState } from '../src/crdt/index.js';
import { meshSchemaFor } from '../src/node/schemas.js';
import { agentSchema } from '../src/registry/agent-schema.js';
import { type Delta, Replica } from '../src/replica/index.js';
import { gc, median, round, type Row, timeRuns } from './util.js';

const CAPABILITIES = ['summarize', 'translate', 'search', 'code', 'review', 'plan', 'test', 'deploy'];
const TYPES = ['worker', 'planner', 'reviewer', 'tool'];

function replica(nodeId: string): Replica {
  return new Replica({ nodeId, schemaFor: meshSchemaFor });
}

/** A realistic agent registration: every field written once by its hosting node. */
export function agentDelta(r: Replica, i: number): (cur: RecordState) => RecordState {
  return (cur) => {
    const t = r.clock.now();
    const w = r.nodeId;
    const s = agentSchema.fields;
    let caps = agentSchema.get(cur, 'capabilities');
    let capsDelta = orSet.empty();
    for (let k = 0; k < 3; k++) {
      const d = orSet.add(caps, CAPABILITIES[(i + k * 3) % CAPABILITIES.length] as string, w);
      caps = orSet.merge(caps, d);
      capsDelta = orSet.merge(capsDelta, d);
    }
    return agentSchema.delta({
      owner: s.owner.set(w, t, w),
      name: s.name.set(`agent-${i}`, t, w),
      type: s.type.set(TYPES[i % TYPES.length] as string, t, w),
      capabilities: capsDelta,
      state: s.state.set('RUNNING', t, w),
      health: s.health.set('healthy', t, w),
      load: s.load.set(i % 7, t, w),
      capacity: s.capacity.set(8, t, w),
      heartbeat: s.heartbeat.set(1_763_700_000_000 + i, t, w),
      executions: gCounter.increment(agentSchema.get(cur, 'executions'), w, 1 + (i % 50)),
      meta: s.meta.set({ region: 'eu-west', version: '1.4.2' }, t, w),
    });
  };
}

type OpKind = 'lww' | 'counter' | 'orset';

/** Deltas of one kind on small values, spread over `keys` agent records. */
function makeDeltas(kind: OpKind, n: number, keys: number): { source: Replica; deltas: Delta[] } {
  const source = replica('node-source-0000000000000000000000000000000000000000');
  const deltas: Delta[] = [];
  const s = agentSchema.fields;
  for (let i = 0; i < n; i++) {
    const key = `agent/a${i % keys}`;
    deltas.push(
      source.mutate(key, (cur) => {
        const w = source.nodeId;
        switch (kind) {
          case 'lww':
            return agentSchema.delta({ load: s.load.set(i % 100, source.clock.now(), w) });
          case 'counter':
            return agentSchema.delta({ executions: gCounter.increment(agentSchema.get(cur, 'executions'), w, 1) });
          case 'orset': {
            const caps = agentSchema.get(cur, 'capabilities');
            const c = CAPABILITIES[i % CAPABILITIES.length] as string;
            return agentSchema.delta({ capabilities: i % 2 ? orSet.remove(caps, c) : orSet.add(caps, c, w) });
          }
        }
      }),
    );
  }
  return { source, deltas };
}

export async function benchReplica(): Promise<Row[]> {
  const rows: Row[] = [];
  const N = 200_000;
  for (const kind of ['lww', 'counter', 'orset'] as const) {
    const { deltas } = makeDeltas(kind, N, 10_000);
    const codecReplica = replica('node-codec');
    const wires = deltas.map((d) => codecReplica.deltaToWire(d));
    const runs = timeRuns(5, () => {
      const r = replica('node-target');
      for (const d of deltas) r.applyDelta(d);
    });
    const decodeRuns = timeRuns(5, () => {
      const r = replica('node-target');
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
  rows.push(...memoryPerRecord(100_000));
  return rows;
}

/** Heap per agent-like record, with and without the Merkle tree's share. */
function memoryPerRecord(n: number): Row[] {
  gc();
  const before = process.memoryUsage().heapUsed;
  const r = replica('node-12D3KooWQmpLqdLxSnKNdXeqGPwHZyqfyvBzSbw9mfV7cKwqz8Rv');
  for (let i = 0; i < n; i++) r.mutate(`agent/${i.toString(36).padStart(12, '0')}`, agentDelta(r, i));
  gc();
  const records = process.memoryUsage().heapUsed - before;
  r.merkle();
  gc();
  const withMerkle = process.memoryUsage().heapUsed - before;
  const sample = r.encodeRecord(`agent/${(0).toString(36).padStart(12, '0')}`).length;
  return [
    {
      bench: 'memory per agent record (15 fields, 11 set)',
      ops: n,
      'bytes/record': Math.round(records / n),
      'bytes/record incl. Merkle': Math.round(withMerkle / n),
      'encoded bytes/record': sample,
      target: '<= 600 B (stretch 400)',
    },
  ];
}
