import {
  AGENT_HOST_SERVICE,
  type AgentAction,
  type AgentControl,
  type AgentHost,
  type LocalAgentStatus,
} from '../agents/host.js';
import { AgentError, AgentErrorCode } from '../agents/errors.js';
import type { MembershipView } from '../membership/index.js';
import { isNetError, type MeshHost, type Session } from '../net/index.js';
import type { NodeComponents, Service, ServiceFactory } from '../node/service.js';
import type { AgentRegistry } from '../registry/agents.js';
import type { Logger } from '../util/log.js';
import type { MetricSet } from '../util/metrics.js';
import { ControlError, ControlErrorCode } from './errors.js';
import {
  agentControlProtocol,
  type ControlAnswer,
  controlAnswerSchema,
  controlRequestSchema,
  decodeFrame,
  encodeFrame,
  MAX_CONTROL_FRAME,
} from './protocol.js';

export const AGENT_CONTROL_SERVICE = 'agent-control';

/** Dialling and protocol negotiation with the hosting node. */
const OPEN_TIMEOUT_MS = 5_000;
/**
 * The answer: a restart waits for the agent to stop (its grace, 2 s by default, then SIGKILL)
 * and, for a persistent agent, to say ready (10 s by default): 30 s covers both with room.
 */
const ANSWER_TIMEOUT_MS = 30_000;

interface ControlDeps {
  nodeId: string;
  meshName: string;
  host: MeshHost;
  membership: MembershipView;
  agents: AgentRegistry;
  local: AgentControl | undefined;
  log: Logger;
}

/**
 * Control of every agent in the mesh from any node: an action on an agent this node hosts goes
 * to its agent host; one on an agent hosted elsewhere is forwarded to its hosting node (the
 * registry's owner) over a libp2p request protocol, whose answer is that node's view of the agent
 * or its refusal (the same AgentError codes a local action raises, so the HTTP API answers alike
 * wherever the agent runs). Every node serves the protocol for the agents it hosts.
 *
 * Who may ask: any member of the mesh (connections are authenticated, and a private mesh's are
 * guarded by its key). That is the point, one node's dashboard or CLI controls the whole mesh;
 * the HTTP API in front of it has its own bearer token.
 */
export class MeshAgentControl implements AgentControl, Service {
  readonly name = AGENT_CONTROL_SERVICE;
  readonly stats = { forwarded: 0, served: 0, failures: 0 };

  constructor(private readonly deps: ControlDeps) {}

  get protocol(): string {
    return agentControlProtocol(this.deps.meshName);
  }

  async start(): Promise<void> {
    await this.deps.host.handle(this.protocol, (session, remote) => this.serve(session, remote), {
      maxFrameSize: MAX_CONTROL_FRAME,
      // The handler runs the action itself: as long as the asking side waits.
      sessionTimeoutMs: ANSWER_TIMEOUT_MS,
      timeoutMs: ANSWER_TIMEOUT_MS,
    });
  }

  async stop(): Promise<void> {
    await this.deps.host.unhandle(this.protocol).catch(() => {});
  }

  metrics(m: MetricSet): void {
    m.counter(
      'agent_control_requests_total',
      'Agent control actions forwarded to their hosting node, or served for a peer',
      { forwarded: this.stats.forwarded, served: this.stats.served },
      'direction',
    );
    m.counter(
      'agent_control_failures_total',
      'Forwarded agent control actions that got no valid answer',
      this.stats.failures,
    );
  }

  list(): LocalAgentStatus[] {
    return this.deps.local?.list() ?? [];
  }

  get(id: string): LocalAgentStatus | undefined {
    return this.deps.local?.get(id);
  }

  /**
   * Applies `action` to agent `id` wherever it runs; resolves with the hosting node's view of it.
   * Throws AgentError (NOT_LOCAL, INVALID_STATE, ... from the hosting node) or ControlError
   * (AGENT_NOT_FOUND, AGENT_NODE_UNREACHABLE, AGENT_CONTROL_TIMEOUT, AGENT_CONTROL_FAILED).
   */
  async control(id: string, action: AgentAction): Promise<LocalAgentStatus> {
    const { local, agents, nodeId, membership } = this.deps;
    if (local?.get(id) !== undefined) return local.control(id, action);
    const agent = agents.get(id);
    if (agent === undefined || agent.removed) {
      throw new ControlError(ControlErrorCode.AGENT_NOT_FOUND, `agent ${id} not found`, { details: { id } });
    }
    if (agent.owner === nodeId) {
      // A record this node owns but no process it runs (registered through the API, say).
      throw new AgentError(AgentErrorCode.NOT_LOCAL, `agent ${id} is not run by this node`, { details: { id } });
    }
    if (!membership.isReachable(agent.owner)) {
      throw new ControlError(
        ControlErrorCode.AGENT_NODE_UNREACHABLE,
        `agent ${id} runs on node ${agent.owner}, which is unreachable (no heartbeat)`,
        { details: { id, node: agent.owner } },
      );
    }
    return this.forward(agent.owner, id, action);
  }

  private async forward(node: string, id: string, action: AgentAction): Promise<LocalAgentStatus> {
    this.stats.forwarded++;
    const details = { id, node, action };
    let frame: Uint8Array;
    try {
      const session = await this.deps.host.openSession(node, this.protocol, {
        openTimeoutMs: OPEN_TIMEOUT_MS,
        timeoutMs: ANSWER_TIMEOUT_MS,
        maxFrameSize: MAX_CONTROL_FRAME,
      });
      try {
        frame = await session.request(encodeFrame({ v: 1, agent: id, action }));
      } finally {
        await session.close().catch(() => {});
      }
    } catch (err) {
      this.stats.failures++;
      this.deps.log.debug({ ...details, err: (err as Error).message }, 'agent control not forwarded');
      if (isNetError(err, 'STREAM_TIMEOUT')) {
        throw new ControlError(
          ControlErrorCode.AGENT_CONTROL_TIMEOUT,
          `node ${node} did not answer ${action} of agent ${id} in time`,
          { details, cause: err },
        );
      }
      const code = isNetError(err) ? err.code : 'UNKNOWN';
      throw new ControlError(
        ControlErrorCode.AGENT_NODE_UNREACHABLE,
        `cannot reach node ${node}, which runs agent ${id} (${code})`,
        { details: { ...details, reason: code }, cause: err },
      );
    }
    let answer: ControlAnswer;
    try {
      answer = decodeFrame(controlAnswerSchema, frame) as ControlAnswer;
    } catch (err) {
      this.stats.failures++;
      throw new ControlError(ControlErrorCode.AGENT_CONTROL_FAILED, `node ${node} sent an invalid answer`, {
        details,
        cause: err,
      });
    }
    if (answer.ok) return answer.status;
    const { code, message } = answer.error;
    // The hosting node's refusal, with the code a local action would have raised.
    if (Object.hasOwn(AgentErrorCode, code)) {
      throw new AgentError(code as AgentErrorCode, `node ${node}: ${message}`, { details });
    }
    throw new ControlError(ControlErrorCode.AGENT_CONTROL_FAILED, `node ${node}: ${message}`, {
      details: { ...details, code },
    });
  }

  private async serve(session: Session, remote: string): Promise<void> {
    const frame = await session.receive();
    let answer: ControlAnswer;
    try {
      const req = decodeFrame(controlRequestSchema, frame);
      this.stats.served++;
      const local = this.deps.local;
      if (local === undefined) {
        throw new AgentError(AgentErrorCode.NOT_LOCAL, `agent ${req.agent} is not run by node ${this.deps.nodeId}`);
      }
      this.deps.log.info({ agent: req.agent, action: req.action, from: remote }, 'agent control from a peer');
      answer = { ok: true, status: await local.control(req.agent, req.action) };
    } catch (err) {
      if (err instanceof AgentError) answer = { ok: false, error: { code: err.code, message: err.message } };
      else if (err instanceof SyntaxError || (err as Error).name === 'ZodError') {
        answer = { ok: false, error: { code: 'BAD_REQUEST', message: 'not a valid agent-control request' } };
      } else {
        this.deps.log.error({ err, from: remote }, 'agent control failed');
        answer = { ok: false, error: { code: 'INTERNAL', message: 'internal error' } };
      }
    }
    await session.send(encodeFrame(answer));
    await session.close();
  }
}

/**
 * Agent control across the mesh as a node service (every node runs one, after its agent host):
 * see MeshAgentControl.
 */
export function agentControl(): ServiceFactory<MeshAgentControl> {
  return (c: NodeComponents) =>
    new MeshAgentControl({
      nodeId: c.nodeId,
      meshName: c.meshName,
      host: c.host,
      membership: c.membership,
      agents: c.agents,
      local: c.service<AgentHost & Service>(AGENT_HOST_SERVICE),
      log: c.logger('mesh:control'),
    });
}
