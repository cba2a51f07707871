import { decode, encode, encodeMsgpack } from '../codec/index.js';
import { DotSet } from '../crdt/index.js';
import { isNetError, type MeshHost, type Session } from '../net/index.js';
import {
  BloomSummary,
  bloomOf,
  type DeltaWire,
  MERKLE_FANOUT,
  merkleDiff,
  missingFrom,
  PolicyError,
  type Replica,
} from '../replica/index.js';
import { type Logger, logger } from '../util/log.js';
import type { DeltaLog } from './delta-log.js';
import { protocolError, SyncError, SyncErrorCode } from './errors.js';
import {
  expect,
  type Hello,
  nodeFromWire,
  nodeToWire,
  parseMessage,
  type Records,
  SYNC_LIMITS,
  syncProtocol,
  SYNC_VERSION,
  type SyncMessage,
} from './messages.js';

export type Strategy = 'none' | 'gaps' | 'merkle' | 'bloom';
export type StrategyChoice = 'adaptive' | Exclude<Strategy, 'none'>;

export interface SyncReport {
  peer: string;
  strategy: Strategy;
  /** Estimated number of differing records before the exchange. */
  estimate: number;
  rounds: number;
  bytesSent: number;
  bytesReceived: number;
  recordsSent: number;
  recordsReceived: number;
  recordBytesReceived: number;
  recordBytesSent: number;
  deltasReceived: number;
  /** Wire bytes of frames carrying records or deltas (both directions); the rest identified them. */
  payloadBytes: number;
  /** Keys found differing by the Merkle pass. */
  differing: number;
  durationMs: number;
}

export interface StrategyStats {
  sessions: number;
  bytesSent: number;
  bytesReceived: number;
  rounds: number;
  recordsSent: number;
  recordsReceived: number;
}

export type Phase = Exclude<Strategy, 'none'>;

export interface SyncStats {
  initiated: number;
  served: number;
  failures: number;
  /** Failed sessions (either side) by the error's code: CHECKSUM_MISMATCH, FRAME_TOO_LARGE, ... */
  failuresByCode: Record<string, number>;
  /** Sessions the peer refused at negotiation: it does not speak this mesh (name or version). */
  unsupported: number;
  rejectedRecords: Record<string, number>;
  /** Sessions by the strategy the initiator chose. */
  sessions: Record<Strategy, number>;
  /**
   * Traffic by phase, on the initiating side: a Bloom session's Merkle mop-up counts under
   * merkle, so these show which mechanism moved what.
   */
  byPhase: Record<Phase, StrategyStats>;
}

export interface SyncProtocolOptions {
  replica: Replica;
  host: MeshHost;
  deltaLog: DeltaLog;
  /** The mesh's name (default `default`): part of the protocol id, so meshes never mix. */
  meshName?: string;
  bloomFpRate?: number;
  /** Target encoded size of one record chunk. */
  chunkBytes?: number;
  /** Use gap repair by dots when at most this many dots are missing (in both directions). */
  gapLimit?: number;
  log?: Logger;
}

/** Keys per `want` request: well inside SYNC_LIMITS.maxKeys and the frame limit. */
const WANT_CHUNK = 10_000;
/** An initiated session that has not finished by then is aborted (a slow-drip peer cannot stall us). */
const SESSION_DEADLINE_MS = 60_000;

/** Which phase a request belongs to, as seen by the responder. */
const PHASE_OF: Partial<Record<SyncMessage['t'], Phase>> = {
  gaps: 'gaps',
  deltas: 'gaps',
  bloom: 'bloom',
  nodes: 'merkle',
  want: 'merkle',
};

/** Books a session's traffic (bytes, rounds, records) under the phase it is in. */
class PhaseMeter {
  private current: Phase | undefined;
  private mark: number[] = [];

  constructor(
    private readonly stats: SyncStats,
    private readonly session: Session,
    private readonly report: SyncReport,
  ) {}

  enter(phase: Phase): void {
    if (phase === this.current) return;
    this.close();
    this.current = phase;
    this.stats.byPhase[phase].sessions++;
    this.mark = this.snapshot();
  }

  close(): void {
    if (this.current === undefined) return;
    const now = this.snapshot();
    const s = this.stats.byPhase[this.current];
    s.bytesSent += (now[0] as number) - (this.mark[0] as number);
    s.bytesReceived += (now[1] as number) - (this.mark[1] as number);
    s.rounds += (now[2] as number) - (this.mark[2] as number);
    s.recordsSent += (now[3] as number) - (this.mark[3] as number);
    s.recordsReceived += (now[4] as number) - (this.mark[4] as number);
    this.current = undefined;
  }

  private snapshot(): number[] {
    const r = this.report;
    return [this.session.bytesSent, this.session.bytesReceived, r.rounds, r.recordsSent, r.recordsReceived];
  }
}

const emptyStrategyStats = (): StrategyStats => ({
  sessions: 0,
  bytesSent: 0,
  bytesReceived: 0,
  rounds: 0,
  recordsSent: 0,
  recordsReceived: 0,
});

/** Bytes of one inner node on the wire (16 child hashes) plus framing. */
const INNER_NODE_BYTES = MERKLE_FANOUT * 16 + 8;
/** Bytes per leaf entry (key of ~20 characters plus a 16-byte entry hash plus framing). */
const LEAF_ENTRY_BYTES = 42;

/**
 * Expected bytes to find d differences among n keys by Merkle descent: at level l at most
 * min(d, 16^l) nodes differ and each costs one inner node, then every differing leaf ships its
 * entries (about n / 16^depth of them).
 */
export function merkleCost(d: number, n: number, depth: number): number {
  if (d <= 0) return INNER_NODE_BYTES;
  let bytes = 0;
  for (let l = 0; l < depth; l++) bytes += Math.min(d, MERKLE_FANOUT ** l) * INNER_NODE_BYTES;
  const leaves = MERKLE_FANOUT ** depth;
  const perLeaf = Math.max(1, n / leaves);
  return bytes + Math.min(d, leaves) * perLeaf * LEAF_ENTRY_BYTES;
}

/** Expected bytes of a two-way Bloom exchange plus the Merkle pass that mops up false positives. */
export function bloomCost(d: number, nLocal: number, nRemote: number, depth: number, fpRate: number): number {
  const bitsPerEntry = -Math.log(fpRate) / Math.LN2 ** 2;
  return (
    ((nLocal + nRemote) * bitsPerEntry) / 8 + merkleCost(Math.ceil(d * fpRate) + 1, Math.max(nLocal, nRemote), depth)
  );
}

/**
 * The direct sync protocol: a multi-round conversation on one libp2p stream that reconciles two
 * replicas. The initiator estimates the difference from the version vectors and key counts and
 * picks the cheapest of: gap repair by dots (a few deltas missing), Merkle descent (few
 * differences) or a Bloom exchange followed by a Merkle pass (many differences: a join, a healed
 * partition). Both sides end with the union of their records.
 */
export class SyncProtocol {
  readonly stats: SyncStats = {
    initiated: 0,
    served: 0,
    failures: 0,
    failuresByCode: {},
    unsupported: 0,
    rejectedRecords: {},
    sessions: { none: 0, gaps: 0, merkle: 0, bloom: 0 },
    byPhase: { gaps: emptyStrategyStats(), merkle: emptyStrategyStats(), bloom: emptyStrategyStats() },
  };
  private readonly replica: Replica;
  private readonly host: MeshHost;
  private readonly deltaLog: DeltaLog;
  private readonly fpRate: number;
  private readonly chunkBytes: number;
  private readonly gapLimit: number;
  private readonly log: Logger;
  private readonly lastSession = new Map<string, number>();
  readonly protocol: string;

  constructor(options: SyncProtocolOptions) {
    this.protocol = syncProtocol(options.meshName ?? 'default');
    this.replica = options.replica;
    this.host = options.host;
    this.deltaLog = options.deltaLog;
    this.fpRate = options.bloomFpRate ?? 0.01;
    this.chunkBytes = options.chunkBytes ?? 256 * 1024;
    this.gapLimit = options.gapLimit ?? 256;
    this.log = options.log ?? logger('mesh:sync');
  }

  async start(): Promise<void> {
    await this.host.handle(this.protocol, (session, peer) => this.serve(session, peer), {
      maxInboundStreams: 8,
    });
  }

  async stop(): Promise<void> {
    await this.host.unhandle(this.protocol).catch(() => {});
  }

  /** When a session with peer (either direction) last started, in performance.now() ms. */
  lastSessionAt(peer: string): number {
    return this.lastSession.get(peer) ?? -Infinity;
  }

  /** Reconciles with one connected peer. `strategy` forces a strategy (benchmarks compare them). */
  async syncWith(peer: string, options: { signal?: AbortSignal; strategy?: StrategyChoice } = {}): Promise<SyncReport> {
    const started = performance.now();
    this.lastSession.set(peer, started);
    this.stats.initiated++;
    let session: Session;
    try {
      session = await this.host.openSession(peer, this.protocol, options.signal ? { signal: options.signal } : {});
    } catch (err) {
      this.stats.failures++;
      this.countFailure(err);
      if (isNetError(err) && err.code === 'UNSUPPORTED_PROTOCOL') this.stats.unsupported++;
      throw err;
    }
    const deadline = setTimeout(
      () => session.abort(protocolError(`sync session with ${peer} exceeded ${SESSION_DEADLINE_MS} ms`)),
      SESSION_DEADLINE_MS,
    );
    deadline.unref();
    const report: SyncReport = {
      peer,
      strategy: 'none',
      estimate: 0,
      rounds: 0,
      bytesSent: 0,
      bytesReceived: 0,
      recordsSent: 0,
      recordsReceived: 0,
      recordBytesReceived: 0,
      recordBytesSent: 0,
      deltasReceived: 0,
      payloadBytes: 0,
      differing: 0,
      durationMs: 0,
    };
    try {
      const theirs = await this.exchangeHello(session, report);
      const tree = this.replica.merkle();
      const theirDots = DotSet.fromWire(theirs.dots);
      if (Buffer.compare(theirs.root, tree.root()) === 0) {
        this.replica.observeDots(theirDots);
        await this.send(session, { t: 'done', complete: true });
      } else {
        report.strategy = this.choose(theirs, theirDots, report, options.strategy ?? 'adaptive');
        let complete = true;
        if (report.strategy === 'gaps') {
          complete = await this.phase('gaps', session, report, () => this.repairGaps(session, theirDots, report));
        }
        if (report.strategy === 'bloom')
          await this.phase('bloom', session, report, () => this.bloomExchange(session, report));
        // Gap repair restores missing deltas; only a Merkle pass proves the records now agree, so
        // a forced gaps strategy (benchmarks) still ends with one.
        if (report.strategy !== 'gaps' || !complete || options.strategy === 'gaps') {
          await this.phase('merkle', session, report, () => this.merkleExchange(session, report));
          complete = true;
        }
        // We now hold every record the peer had when it said hello, so its dots are ours too.
        this.replica.observeDots(theirDots);
        await this.send(session, { t: 'done', complete });
      }
      await session.close();
      report.bytesSent = session.bytesSent;
      report.bytesReceived = session.bytesReceived;
      report.durationMs = performance.now() - started;
      this.stats.sessions[report.strategy]++;
      return report;
    } catch (err) {
      this.stats.failures++;
      this.countFailure(err);
      session.abort(err instanceof Error ? err : new Error(String(err)));
      throw err;
    } finally {
      clearTimeout(deadline);
    }
  }

  // --- initiator steps ------------------------------------------------------------------------

  /** Runs one phase of a session and books its traffic under that phase. */
  private async phase<T>(name: Phase, session: Session, report: SyncReport, run: () => Promise<T>): Promise<T> {
    const meter = new PhaseMeter(this.stats, session, report);
    meter.enter(name);
    try {
      return await run();
    } finally {
      meter.close();
    }
  }

  private hello(): Hello {
    const tree = this.replica.merkle();
    return {
      t: 'hello',
      v: SYNC_VERSION,
      dots: this.replica.dots.toWire(),
      root: tree.root(),
      count: tree.size,
      depth: tree.depth,
    };
  }

  private async exchangeHello(session: Session, report: SyncReport): Promise<Hello> {
    await this.send(session, this.hello());
    const theirs = expect(await this.receive(session), 'hello');
    report.rounds++;
    this.checkHello(theirs);
    return theirs;
  }

  private checkHello(h: Hello): void {
    if (h.v !== SYNC_VERSION) throw new SyncError(SyncErrorCode.VERSION_MISMATCH, `peer speaks sync v${h.v}`);
    if (h.depth !== this.replica.merkle().depth)
      throw protocolError(`peer's Merkle depth ${h.depth} differs from ours`);
  }

  private choose(theirs: Hello, theirDots: DotSet, report: SyncReport, forced: StrategyChoice): Strategy {
    const mine = this.replica.dots;
    const missingHere = mine.countMissing(theirDots);
    const missingThere = theirDots.countMissing(mine);
    const nLocal = this.replica.merkle().size;
    // Dots overcount keys (many dots can touch one record) and undercount when dots were lost,
    // so bound the estimate by what the key counts allow.
    const estimate = Math.min(
      Math.max(missingHere + missingThere, Math.abs(theirs.count - nLocal), 1),
      nLocal + theirs.count,
    );
    report.estimate = estimate;
    if (forced !== 'adaptive') return forced;
    if (missingHere + missingThere > 0 && missingHere + missingThere <= this.gapLimit) return 'gaps';
    const depth = theirs.depth;
    return bloomCost(estimate, nLocal, theirs.count, depth, this.fpRate) <
      merkleCost(estimate, Math.max(nLocal, theirs.count), depth)
      ? 'bloom'
      : 'merkle';
  }

  /** Asks for the deltas we lack and pushes the ones the peer lacks; false if a log fell short. */
  private async repairGaps(session: Session, theirDots: DotSet, report: SyncReport): Promise<boolean> {
    const want = this.replica.dots.missingRanges(theirDots, SYNC_LIMITS.maxRanges);
    let complete = want.length < SYNC_LIMITS.maxRanges;
    if (want.length > 0) {
      await this.send(session, { t: 'gaps', ranges: want });
      const res = expect(await this.receive(session, report), 'deltas');
      report.rounds++;
      report.deltasReceived += this.applyDeltas(res.deltas, session.remotePeer);
      if (res.incomplete) complete = false;
    }
    const give = theirDots.missingRanges(this.replica.dots, SYNC_LIMITS.maxRanges);
    if (give.length >= SYNC_LIMITS.maxRanges) complete = false;
    if (give.length > 0) {
      const { deltas, incomplete } = this.fromLog(give);
      await this.send(session, { t: 'deltas', deltas, incomplete }, report);
      if (incomplete) complete = false;
    }
    return complete;
  }

  private async bloomExchange(session: Session, report: SyncReport): Promise<void> {
    const filter = bloomOf(this.replica.merkle(), this.fpRate);
    await this.send(session, { t: 'bloom', filter: filter.toBytes(), reverse: true });
    await this.receiveRecords(session, report);
    const res = expect(await this.receive(session), 'bloom-res');
    report.rounds++;
    if (res.filter !== null) {
      const peerFilter = BloomSummary.fromBytes(res.filter);
      const keys = missingFrom(peerFilter, this.replica.merkle());
      await this.sendRecords(session, keys, report);
    }
  }

  private async merkleExchange(session: Session, report: SyncReport): Promise<void> {
    // 4096 inner nodes are about 1 MiB on the wire: responses stay well inside the frame limit.
    const result = await merkleDiff(
      this.replica.merkle(),
      async (paths) => {
        await this.send(session, { t: 'nodes', paths });
        const res = expect(await this.receive(session), 'nodes-res');
        report.rounds++;
        return res.nodes.map(nodeFromWire);
      },
      { maxPathsPerRequest: 4096 },
    );
    report.differing = result.differing.length;
    if (result.differing.length === 0) return;
    await this.sendRecords(
      session,
      result.differing.filter((k) => this.replica.has(k)),
      report,
    );
    for (let i = 0; i < result.differing.length; i += WANT_CHUNK) {
      await this.send(session, { t: 'want', keys: result.differing.slice(i, i + WANT_CHUNK) });
      await this.receiveRecords(session, report);
      report.rounds++;
    }
  }

  // --- responder ------------------------------------------------------------------------------

  private async serve(session: Session, peer: string): Promise<void> {
    this.stats.served++;
    this.lastSession.set(peer, performance.now());
    let theirDots: DotSet | undefined;
    const report = {
      rounds: 0,
      recordsSent: 0,
      recordBytesSent: 0,
      recordsReceived: 0,
      recordBytesReceived: 0,
    } as SyncReport;
    const meter = new PhaseMeter(this.stats, session, report);
    try {
      for (;;) {
        const frame = await session.receiveOrEnd();
        if (frame === undefined) break;
        const m = this.parse(frame);
        const phase = PHASE_OF[m.t];
        if (phase !== undefined) meter.enter(phase);
        switch (m.t) {
          case 'hello':
            this.checkHello(m);
            theirDots = DotSet.fromWire(m.dots);
            await this.send(session, this.hello());
            break;
          case 'nodes':
            await this.send(session, { t: 'nodes-res', nodes: this.replica.merkle().nodes(m.paths).map(nodeToWire) });
            break;
          case 'want':
            await this.sendRecords(
              session,
              m.keys.filter((k) => this.replica.has(k)),
              report,
            );
            break;
          case 'recs':
            this.mergeRecords(m, peer, report);
            break;
          case 'bloom': {
            const keys = missingFrom(BloomSummary.fromBytes(m.filter), this.replica.merkle());
            await this.sendRecords(session, keys, report);
            await this.send(session, {
              t: 'bloom-res',
              filter: m.reverse ? bloomOf(this.replica.merkle(), this.fpRate).toBytes() : null,
            });
            break;
          }
          case 'gaps': {
            const { deltas, incomplete } = this.fromLog(m.ranges);
            await this.send(session, { t: 'deltas', deltas, incomplete });
            break;
          }
          case 'deltas':
            this.applyDeltas(m.deltas, peer);
            break;
          case 'done':
            if (m.complete && theirDots !== undefined) this.replica.observeDots(theirDots);
            meter.close();
            await session.close();
            return;
          default:
            throw protocolError(`unexpected ${m.t} from the initiator`);
        }
      }
    } catch (err) {
      meter.close();
      this.stats.failures++;
      this.countFailure(err);
      this.log.warn(
        { peer, err: (err as Error).message, code: (err as { code?: string }).code },
        'sync session failed',
      );
      session.abort(err instanceof Error ? err : new Error(String(err)));
    }
  }

  // --- shared helpers -------------------------------------------------------------------------

  private countFailure(err: unknown): void {
    const raw = (err as { code?: unknown } | null)?.code;
    const code = typeof raw === 'string' && /^[A-Z][A-Z0-9_]{0,63}$/.test(raw) ? raw : 'OTHER';
    this.stats.failuresByCode[code] = (this.stats.failuresByCode[code] ?? 0) + 1;
  }

  private parse(frame: Uint8Array): SyncMessage {
    return parseMessage(decode(frame));
  }

  private async send(session: Session, m: SyncMessage, report?: SyncReport): Promise<void> {
    const frame = encode(m);
    if (report !== undefined && (m.t === 'recs' || m.t === 'deltas')) report.payloadBytes += frame.length;
    await session.send(frame);
  }

  private async receive(session: Session, report?: SyncReport): Promise<SyncMessage> {
    const frame = await session.receive();
    const m = this.parse(frame);
    if (report !== undefined && (m.t === 'recs' || m.t === 'deltas')) report.payloadBytes += frame.length;
    return m;
  }

  /** Sends full records in chunks; always ends with a chunk whose `more` is false. */
  private async sendRecords(session: Session, keys: string[], report: SyncReport): Promise<void> {
    let chunk: Array<[string, Uint8Array]> = [];
    let size = 0;
    for (const key of keys) {
      const bytes = this.replica.encodeRecord(key);
      chunk.push([key, bytes]);
      size += bytes.length + key.length + 4;
      report.recordsSent++;
      report.recordBytesSent += bytes.length;
      if (size >= this.chunkBytes || chunk.length >= SYNC_LIMITS.maxRecordsPerFrame) {
        await this.send(session, { t: 'recs', recs: chunk, more: true }, report);
        chunk = [];
        size = 0;
      }
    }
    await this.send(session, { t: 'recs', recs: chunk, more: false }, report);
  }

  private async receiveRecords(session: Session, report: SyncReport): Promise<void> {
    for (;;) {
      const m = expect(await this.receive(session, report), 'recs');
      this.mergeRecords(m, session.remotePeer, report);
      if (!m.more) return;
    }
  }

  private mergeRecords(m: Records, peer: string, report: SyncReport): void {
    for (const [key, bytes] of m.recs) {
      report.recordsReceived++;
      report.recordBytesReceived += bytes.length;
      try {
        this.replica.mergeRecord(key, this.replica.decodeRecord(key, bytes), peer);
      } catch (err) {
        const reason =
          err instanceof PolicyError ? err.reason : ((err as { code?: string }).code ?? 'error').toLowerCase();
        this.stats.rejectedRecords[reason] = (this.stats.rejectedRecords[reason] ?? 0) + 1;
        this.log.debug({ peer, key, reason }, 'record refused');
      }
    }
  }

  /**
   * Deltas for the requested ranges from our log, within a byte budget (a frame must stay under
   * the stream's frame limit) and a scan budget (a request cannot make us loop for long). When
   * either runs out, or a delta has left the log, the answer is marked incomplete and the
   * requester falls back to Merkle.
   */
  private fromLog(ranges: Array<[string, number, number]>): { deltas: DeltaWire[]; incomplete: boolean } {
    const deltas: DeltaWire[] = [];
    let incomplete = false;
    let bytes = 0;
    let scanBudget = 200_000;
    for (const [origin, from, to] of ranges) {
      if (scanBudget <= 0) return { deltas, incomplete: true };
      const r = this.deltaLog.range(origin, from, to, SYNC_LIMITS.maxDeltasPerFrame - deltas.length, scanBudget);
      scanBudget -= r.scanned;
      if (r.incomplete) incomplete = true;
      for (const d of r.deltas) {
        bytes += encodeMsgpack(d).length;
        if (bytes > this.chunkBytes * 4) return { deltas, incomplete: true };
        deltas.push(d);
      }
    }
    return { deltas, incomplete };
  }

  /** Applies deltas relayed by a peer (gap repair); returns how many were applied. */
  private applyDeltas(wires: unknown[], peer: string): number {
    let n = 0;
    for (const w of wires) {
      try {
        const d = this.replica.deltaFromWire(w);
        if (this.replica.applyDelta(d, peer) === 'applied') n++;
        this.deltaLog.add(d.origin, d.seq, w as DeltaWire);
      } catch (err) {
        const reason =
          err instanceof PolicyError ? err.reason : ((err as { code?: string }).code ?? 'error').toLowerCase();
        this.stats.rejectedRecords[reason] = (this.stats.rejectedRecords[reason] ?? 0) + 1;
      }
    }
    return n;
  }
}
