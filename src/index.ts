/**
 * agentmesh as a library: embed a mesh node in another TypeScript program, or use the CRDTs,
 * the codec and the replicated keyspace on their own.
 */
export * from './util/errors.js';
export * as crdt from './crdt/index.js';
export * as codec from './codec/index.js';
export * as replica from './replica/index.js';
export { MeshNode, VERSION } from './node/mesh-node.js';
export type { MeshNodeOptions } from './node/options.js';
export { meshSchemaFor, MESH_SCHEMAS } from './node/schemas.js';
export { AgentRegistry } from './registry/agents.js';
export type { AgentInput, AgentView, AgentFilter } from './registry/agents.js';
export { TaskBoard } from './tasks/tasks.js';
export type { TaskInput, TaskPatch, TaskView } from './tasks/tasks.js';
export type { ApiBackend, MeshEvent, NodeStatus, PeerView } from './api/backend.js';
