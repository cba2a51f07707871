/** Size of a value's JSON form in UTF-8 bytes; Infinity when it has none (cycles, bigints). */
export function jsonBytes(v: unknown): number {
  try {
    const s = JSON.stringify(v);
    return s === undefined ? 0 : Buffer.byteLength(s);
  } catch {
    return Infinity;
  }
}
