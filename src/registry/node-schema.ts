import { lwwRegister, RecordSchema } from '../crdt/index.js';

const isString = (v: unknown): v is string => typeof v === 'string';
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** The node record (key `node/<peerId>`): written only by that node. */
export const nodeSchema = new RecordSchema('node', {
  name: lwwRegister(isString, 'name'),
  addresses: lwwRegister(isStringList, 'addresses'),
  version: lwwRegister(isString, 'version'),
  startedAt: lwwRegister(isNumber, 'startedAt'),
  heartbeat: lwwRegister(isNumber, 'heartbeat'),
  capacity: lwwRegister(isNumber, 'capacity'),
  api: lwwRegister(isString, 'api'),
});
export type NodeSchema = typeof nodeSchema;
