/**
 * The catch-up bar of `mesh start` / `mesh join` on a terminal: how many keys this node holds
 * against the most any connected peer reports, polled from the node's own state (and from the
 * peers' APIs, which their node records announce). Ends when this node has caught up, when the
 * count has not moved for a while with nothing left to learn, or after a bound; it is only a
 * display and never holds up the node.
 */
import type { MeshNode } from '../node/mesh-node.js';
import { progress } from './progress.js';

const POLL_MS = 250;
const MAX_MS = 120_000;
/** Keys unchanged this long with every known peer's count reached (or none known): done. */
const SETTLED_MS = 3000;

export function catchUp(node: MeshNode, token?: string): AbortController {
  const abort = new AbortController();
  void run(node, token, abort.signal).catch(() => {});
  return abort;
}

/** The most keys any peer with a reachable API reports (undefined when none answers). */
async function peersKeys(node: MeshNode, token: string | undefined, signal: AbortSignal): Promise<number | undefined> {
  const connected = new Set(node.host.connectedPeers());
  const apis = node
    .peers()
    .filter((p) => connected.has(p.id) && p.api)
    .map((p) => p.api as string);
  const counts = await Promise.all(
    apis.map(async (api) => {
      try {
        const res = await fetch(`${api}/v1/status`, {
          headers: token ? { authorization: `Bearer ${token}` } : {},
          signal: AbortSignal.any([signal, AbortSignal.timeout(1000)]),
        });
        if (!res.ok) return undefined;
        const s = (await res.json()) as { keys?: unknown };
        return typeof s.keys === 'number' ? s.keys : undefined;
      } catch {
        return undefined;
      }
    }),
  );
  const known = counts.filter((n): n is number => n !== undefined);
  return known.length === 0 ? undefined : Math.max(...known);
}

async function run(node: MeshNode, token: string | undefined, signal: AbortSignal): Promise<void> {
  const started = Date.now();
  let target = node.status().keys;
  const bar = progress({ title: 'catching up', total: Math.max(target, 1), unit: 'keys' });
  let last = -1;
  let stableSince = Date.now();
  try {
    while (!signal.aborted && Date.now() - started < MAX_MS) {
      const theirs = await peersKeys(node, token, signal);
      const mine = node.status().keys;
      if (theirs !== undefined && theirs > target) {
        target = theirs;
        bar.setTotal(target);
      }
      if (mine !== last) {
        last = mine;
        stableSince = Date.now();
      }
      bar.update(mine, node.host.connectedPeers().length === 0 ? 'waiting for peers' : 'syncing');
      if (theirs !== undefined && mine >= theirs) {
        bar.update(mine, 'caught up');
        return;
      }
      if (Date.now() - stableSince > SETTLED_MS && (theirs === undefined || mine >= target)) return;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    bar.stop();
  }
}
