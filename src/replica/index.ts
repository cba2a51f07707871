export * from './errors.js';
export * from './delta.js';
export * from './entry-hash.js';
export * from './merkle.js';
export * from './replica.js';
export * from './durable.js';
export * from './bloom.js';
