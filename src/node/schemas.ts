import type { AnyRecordSchema } from '../crdt/index.js';
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
