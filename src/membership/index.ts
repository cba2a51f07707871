export * from './phi.js';
export * from './view.js';
