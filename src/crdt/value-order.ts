/**
 * A deterministic total order over JSON-like values. Registers only need it to break the
 * (impossible in practice, possible in adversarial or fuzzed input) tie of two different values
 * written with the same timestamp by the same writer; without it merge would not commute.
 */
export function compareValues(a: unknown, b: unknown): number {
  if (a === b) return 0;
  const ta = rank(a);
  const tb = rank(b);
  if (ta !== tb) return ta - tb;
  switch (ta) {
    case 1:
      return a === b ? 0 : a ? 1 : -1;
    case 2:
      return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
    case 3:
      return (a as string) < (b as string) ? -1 : (a as string) > (b as string) ? 1 : 0;
    default: {
      const sa = canonicalJson(a);
      const sb = canonicalJson(b);
      return sa < sb ? -1 : sa > sb ? 1 : 0;
    }
  }
}

function rank(v: unknown): number {
  if (v === null || v === undefined) return 0;
  switch (typeof v) {
    case 'boolean':
      return 1;
    case 'number':
      return 2;
    case 'string':
      return 3;
    default:
      return 4;
  }
}

/** JSON with object keys sorted, so equal values print equally. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => {
    if (x instanceof Uint8Array) return { $bytes: Buffer.from(x).toString('base64') };
    if (x !== null && typeof x === 'object' && !Array.isArray(x)) {
      const o = x as Record<string, unknown>;
      const sorted: Record<string, unknown> = {};
      for (const k of Object.keys(o).sort()) sorted[k] = o[k];
      return sorted;
    }
    return x;
  });
}

export function deepEqual(a: unknown, b: unknown): boolean {
  return a === b || compareValues(a, b) === 0;
}
