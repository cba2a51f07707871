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
  /**
   * Set by any member that forgot this (dead) node: the node's heartbeat at that moment. The
   * node counts as forgotten while its heartbeat is no higher, so one that comes back is shown
   * again. Appended last, so records written before it decode unchanged.
   */
  forgotten: lwwRegister(isNumber, 'forgotten'),
});

/** Whether a node record's value says it was forgotten and has not heartbeated since. */
export function isForgotten(v: { heartbeat?: number | undefined; forgotten?: number | undefined }): boolean {
  return v.forgotten !== undefined && (v.heartbeat ?? 0) <= v.forgotten;
}
export type NodeSchema = typeof nodeSchema;
