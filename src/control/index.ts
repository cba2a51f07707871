export * from './agent-control.js';
export * from './errors.js';
export * from './protocol.js';
