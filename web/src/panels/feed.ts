/** The live feed: changes to tasks, agents and nodes as they are applied here, newest first. */
import { html, shortId } from '../html.js';
import type { FeedItem } from '../store.js';

const time = (ms: number): string => new Date(ms).toLocaleTimeString([], { hour12: false });

export function FeedPanel({ feed, self }: { feed: FeedItem[]; self: string | undefined }) {
  return html`
    <section class="panel feed" aria-labelledby="feed-h">
      <h2 id="feed-h">Live changes</h2>
      ${
        feed.length === 0
          ? html`<p class="empty">Waiting for changes…</p>`
          : html`<ol>
              ${feed.map(
                (f) =>
                  html`<li key=${f.seq} class=${`feed-${f.kind}`}>
                    <time>${time(f.at)}</time>
                    <span class=${`kind kind-${f.kind}`}>${f.kind}</span>
                    <span class=${f.status === undefined ? '' : `ftext ftext-${f.status.toLowerCase()}`}
                      >${f.text}</span
                    >
                    <span class="muted"
                      >${f.local ? 'here' : f.origin !== null && f.origin !== self ? `from ${shortId(f.origin)}` : 'remote'}</span
                    >
                  </li>`,
              )}
            </ol>`
      }
    </section>
  `;
}
