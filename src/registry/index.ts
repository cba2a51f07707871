export * from './errors.js';
export * from './agent-schema.js';
export * from './node-schema.js';
export * from './agent-policy.js';
export * from './agents.js';
