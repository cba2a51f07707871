import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { MeshHost } from '../net/index.js';
import type { Logger } from '../util/log.js';

/**
 * Quorum claims (a task's `claim: "quorum"`): before it claims, a node collects grants from a
 * majority of the mesh's members over this request protocol. Each member grants one holder per
 * (task, epoch), so two claimants of the same epoch can never both hold a majority, and a node in
 * a minority partition cannot claim at all: such tasks wait for the heal.
 *
 * A claimant that does not reach a majority gives its grants back (a release naming the same
 * ticket). Without that, a split vote (each claimant granted by a minority, as after a partition
 * heals, when claimants on both sides ask at once) kept the task's epoch blocked for good: every
 * member keeps granting only its first holder per epoch, and the epoch cannot move on without a
 * claim.
 *
 * Wire: one session per request; the request and the answer are one JSON frame each.
 */
export const quorumProtocol = (mesh: string): string => `/agentmesh/${mesh}/claim-grant/1`;

const requestSchema = z.strictObject({
  task: z.string().min(1).max(128),
  epoch: z.number().int().min(1),
  node: z.string().min(1).max(256),
  agent: z.string().min(1).max(128),
  /** One acquisition's id: a release names it, so a late release never drops a later grant. */
  ticket: z.string().min(1).max(64).optional(),
  /** Gives back the grant this acquisition got (it did not reach a majority). */
  release: z.literal(true).optional(),
});
export type GrantRequest = z.infer<typeof requestSchema>;
const answerSchema = z.strictObject({ granted: z.boolean(), reason: z.string().max(256).optional() });

/** Most (task -> grant) entries kept; the oldest are forgotten first. */
const MAX_GRANTS = 100_000;
const REQUEST_TIMEOUT_MS = 2_000;

export interface QuorumDeps {
  host: MeshHost;
  meshName: string;
  nodeId: string;
  log: Logger;
  /** The epoch this node's replica holds for a task (undefined: unknown), and whether it ended. */
  taskEpoch(id: string): { epoch: number; final: boolean } | undefined;
  /** Every member of the mesh this node knows (node records), itself included. */
  members(): string[];
}

export class QuorumGrants {
  /** task -> the holder granted at the highest epoch asked, and the acquisition it granted. */
  private readonly grants = new Map<string, { epoch: number; holder: string; ticket: string | undefined }>();
  readonly stats = { granted: 0, refused: 0, released: 0, requests: 0, failures: 0 };

  constructor(private readonly deps: QuorumDeps) {}

  get protocol(): string {
    return quorumProtocol(this.deps.meshName);
  }

  async start(): Promise<void> {
    await this.deps.host.handle(this.protocol, async (session) => {
      const frame = await session.receive();
      let answer: { granted: boolean; reason?: string };
      try {
        const req = requestSchema.parse(JSON.parse(Buffer.from(frame).toString('utf8')));
        answer = this.decide(req);
      } catch (err) {
        answer = { granted: false, reason: `bad request: ${(err as Error).message.slice(0, 200)}` };
      }
      await session.send(Buffer.from(JSON.stringify(answer)));
      await session.close();
    });
  }

  async stop(): Promise<void> {
    await this.deps.host.unhandle(this.protocol).catch(() => {});
  }

  /**
   * One member's decision: the first holder asking for an epoch gets it; older epochs get nothing.
   * A release drops the grant it names (same epoch, holder and ticket) and is never granted.
   */
  decide(req: GrantRequest): { granted: boolean; reason?: string } {
    if (req.release === true) {
      const g = this.grants.get(req.task);
      if (
        g !== undefined &&
        g.epoch === req.epoch &&
        g.holder === `${req.node}/${req.agent}` &&
        g.ticket === req.ticket
      ) {
        this.grants.delete(req.task);
        this.stats.released++;
      }
      return { granted: false, reason: 'released' };
    }
    const known = this.deps.taskEpoch(req.task);
    if (known !== undefined && (known.final || known.epoch >= req.epoch)) {
      this.stats.refused++;
      return { granted: false, reason: known.final ? 'the task has ended' : `the task is at epoch ${known.epoch}` };
    }
    const holder = `${req.node}/${req.agent}`;
    const g = this.grants.get(req.task);
    if (g !== undefined && (g.epoch > req.epoch || (g.epoch === req.epoch && g.holder !== holder))) {
      this.stats.refused++;
      return { granted: false, reason: `granted to ${g.holder} at epoch ${g.epoch}` };
    }
    this.grants.delete(req.task);
    this.grants.set(req.task, { epoch: req.epoch, holder, ticket: req.ticket });
    if (this.grants.size > MAX_GRANTS) this.grants.delete(this.grants.keys().next().value as string);
    this.stats.granted++;
    return { granted: true };
  }

  /**
   * Asks every member for a grant (this node's own decision included); true once a strict
   * majority of the known members granted. Unreachable members count as refusals. Short of a
   * majority, it releases what it got (and what a member that did not answer may have granted)
   * before it resolves false.
   */
  async acquire(req: GrantRequest, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    const members = this.deps.members();
    const need = Math.floor(members.length / 2) + 1;
    const ask: GrantRequest = { ...req, ticket: randomBytes(8).toString('hex') };
    let granted = this.decide(ask).granted ? 1 : 0;
    if (granted >= need) return true;
    const peers = members.filter((m) => m !== this.deps.nodeId);
    const answers = await Promise.all(peers.map((peer) => this.ask(peer, ask, options.signal)));
    for (const ok of answers) if (ok === true) granted++;
    if (granted >= need) return true;
    this.decide({ ...ask, release: true });
    await Promise.all(
      peers.filter((_, i) => answers[i] !== false).map((peer) => this.ask(peer, { ...ask, release: true })),
    );
    return false;
  }

  /** One request to one peer: whether it granted, or undefined when it did not answer. */
  private async ask(peer: string, req: GrantRequest, signal?: AbortSignal): Promise<boolean | undefined> {
    this.stats.requests++;
    try {
      const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
      const session = await this.deps.host.openSession(peer, this.protocol, {
        signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
      });
      const reply = await session.request(Buffer.from(JSON.stringify(req)));
      await session.close().catch(() => {});
      return answerSchema.parse(JSON.parse(Buffer.from(reply).toString('utf8'))).granted;
    } catch (err) {
      this.stats.failures++;
      this.deps.log.debug(
        { peer, task: req.task, release: req.release, err: (err as Error).message },
        'no answer from peer',
      );
      return undefined;
    }
  }
}
