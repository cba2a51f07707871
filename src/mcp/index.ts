export * from './api-client.js';
export * from './command.js';
export * from './recent-events.js';
export * from './server.js';
