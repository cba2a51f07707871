export * from './errors.js';
export * from './messages.js';
export * from './delta-log.js';
export * from './gossip.js';
export * from './protocol.js';
export * from './scheduler.js';
export * from './ingest.js';
export * from './push.js';
