import { gCounter, lwwRegister, orSet, RecordSchema } from '../crdt/index.js';

export const AGENT_STATES = [
  'INITIALIZING',
  'RUNNING',
  'PAUSED',
  'STOPPING',
  'TERMINATED',
  'ERROR',
  'RESTARTING',
] as const;
export type AgentState = (typeof AGENT_STATES)[number];
export const AGENT_HEALTH = ['healthy', 'degraded', 'unhealthy', 'unknown'] as const;
export type AgentHealth = (typeof AGENT_HEALTH)[number];

const isString = (v: unknown): v is string => typeof v === 'string';
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
const isState = (v: unknown): v is AgentState => AGENT_STATES.includes(v as AgentState);
const isHealth = (v: unknown): v is AgentHealth => AGENT_HEALTH.includes(v as AgentHealth);
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * The agent record (key `agent/<agentId>`). The owner fields are written only by the hosting
 * node; lifecycle state moves back and forth (RUNNING <-> PAUSED), so it is last-writer-wins
 * rather than a lattice. Stats are G-Counters so every node's increments add up. Removal sets
 * `removed`; the record stays so that the removal replicates and wins over stale updates.
 */
export const agentSchema = new RecordSchema('agent', {
  owner: lwwRegister(isString, 'owner'),
  name: lwwRegister(isString, 'name'),
  type: lwwRegister(isString, 'type'),
  capabilities: orSet,
  state: lwwRegister(isState, 'state'),
  health: lwwRegister(isHealth, 'health'),
  load: lwwRegister(isNumber, 'load'),
  capacity: lwwRegister(isNumber, 'capacity'),
  heartbeat: lwwRegister(isNumber, 'heartbeat'),
  executions: gCounter,
  successes: gCounter,
  failures: gCounter,
  restarts: gCounter,
  meta: lwwRegister(isObject, 'meta'),
  removed: lwwRegister(isBool, 'removed'),
});
export type AgentSchema = typeof agentSchema;
