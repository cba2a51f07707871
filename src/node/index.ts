export * from './mesh-node.js';
export * from './options.js';
export * from './schemas.js';
export * from './service.js';
export * from './types.js';
