import type { RecordSchema } from '../crdt/index.js';
import { taskSchema } from '../tasks/task-schema.js';
import { agentSchema } from '../registry/agent-schema.js';
import { nodeSchema } from '../registry/node-schema.js';

/** The schema of each key prefix of the mesh's keyspace. */
export const MESH_SCHEMAS: Readonly<Record<string, RecordSchema>> = {
  agent: agentSchema as unknown as RecordSchema,
  task: taskSchema as unknown as RecordSchema,
  node: nodeSchema as unknown as RecordSchema,
};

export function meshSchemaFor(key: string): RecordSchema | undefined {
  const slash = key.indexOf('/');
  if (slash <= 0) return undefined;
  return MESH_SCHEMAS[key.slice(0, slash)];
}
