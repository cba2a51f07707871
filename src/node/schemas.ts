import type { AnyRecordSchema } from '../crdt/index.js';
import { agentPolicy } from '../registry/agent-policy.js';
import { nodePolicy } from '../registry/node-policy.js';
import type { PolicyInput } from '../replica/index.js';
import { taskPolicy, taskStaleWrite } from '../tasks/task-policy.js';
import { taskSchema } from '../tasks/task-schema.js';
import { agentSchema } from '../registry/agent-schema.js';
import { nodeSchema } from '../registry/node-schema.js';

/** The schema of each key prefix of the mesh's keyspace. */
export const MESH_SCHEMAS: Readonly<Record<string, AnyRecordSchema>> = {
  agent: agentSchema as unknown as AnyRecordSchema,
  task: taskSchema as unknown as AnyRecordSchema,
  node: nodeSchema as unknown as AnyRecordSchema,
};

export function meshSchemaFor(key: string): AnyRecordSchema | undefined {
  const slash = key.indexOf('/');
  if (slash <= 0) return undefined;
  return MESH_SCHEMAS[key.slice(0, slash)];
}

/** Routes each key prefix to the rules of its record type. */
export function meshPolicy(input: PolicyInput): void {
  if (input.key.startsWith('agent/')) agentPolicy(input);
  else if (input.key.startsWith('task/')) taskPolicy(input);
  else if (input.key.startsWith('node/')) nodePolicy(input);
}

/** Remote writes that lose the merge because they are fenced off (a task run's stale epoch). */
export function meshFenced(input: PolicyInput): string | undefined {
  return input.key.startsWith('task/') ? taskStaleWrite(input) : undefined;
}
