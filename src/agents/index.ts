export * from './definitions.js';
export * from './errors.js';
export * from './host.js';
export * from './protocol.js';
