export * from './mesh-node.js';
export * from './options.js';
export * from './schemas.js';
