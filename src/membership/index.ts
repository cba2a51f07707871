export * from './phi.js';
export * from './view.js';
export * from './clock-sync.js';
