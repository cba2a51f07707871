// Bundles the dashboard (web/) into dist/dashboard/ with esbuild: one script, one stylesheet,
// the page and its icon. Called by `npm run build` after tsc; the API serves the result at `/`
// (src/api/routes/dashboard.ts). Everything it needs is in the bundle: nodes may be offline, so
// the build fails if any output refers to a URL outside the node (no CDN, no web fonts).
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import process from 'node:process';
import { build } from 'esbuild';

const root = resolve(import.meta.dirname, '..');
const web = join(root, 'web');
const out = join(root, 'dist/dashboard');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: { dashboard: join(web, 'src/main.ts'), 'dashboard-style': join(web, 'dashboard.css') },
  outdir: out,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome110', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: 'linked',
  // Licence texts of the bundled libraries go to a file next to the bundle, not into it.
  legalComments: 'linked',
  logLevel: 'warning',
  tsconfig: join(web, 'tsconfig.json'),
});
for (const file of ['index.html', 'favicon.svg']) copyFileSync(join(web, file), join(out, file));

// SVG and XLink namespaces are identifiers that Preact writes into the DOM, never fetched.
const NAMESPACES = new Set([
  'http://www.w3.org/2000/svg',
  'http://www.w3.org/1999/xlink',
  'http://www.w3.org/1999/xhtml',
  'http://www.w3.org/1998/Math/MathML',
  'http://www.w3.org/XML/1998/namespace',
]);
const offenders = [];
for (const file of readdirSync(out)) {
  if (file.endsWith('.map') || file.endsWith('.LEGAL.txt')) continue;
  const text = readFileSync(join(out, file), 'utf8');
  for (const m of text.matchAll(/(?:https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}[^\s"'`)]*/gi)) {
    const url = m[0].startsWith('//') ? `http:${m[0]}` : m[0];
    if (!NAMESPACES.has(url.replace(/^https:/, 'http:'))) offenders.push(`${file}: ${m[0]}`);
  }
}
if (offenders.length > 0) {
  process.stderr.write(`build-dashboard: external URLs in the bundle:\n  ${offenders.join('\n  ')}\n`);
  process.exit(1);
}
