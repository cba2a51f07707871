export * from './errors.js';
export * from './task-schema.js';
export * from './task-policy.js';
export * from './tasks.js';
