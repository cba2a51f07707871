/**
 * The snapshot format as documented in src/store/snapshot.ts, built by hand here (independently of
 * the writer): a well-formed file imports, and files whose checksums are right but whose content is
 * wrong are refused with SNAPSHOT_INVALID before anything is written.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateRawSync } from 'node:zlib';
import { DurableStore, StoreError } from '../../src/store/index.js';

const dirs: string[] = [];
after(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'agentmesh-snapshot-'));
  dirs.push(d);
  return d;
}

type Entry = [kind: number, key: string, value: string];

function entryBytes([kind, key, value]: Entry): Buffer {
  const k = Buffer.from(key);
  const v = Buffer.from(value);
  const b = Buffer.alloc(9 + k.length + v.length);
  b[0] = kind;
  b.writeUInt32LE(k.length, 1);
  k.copy(b, 5);
  b.writeUInt32LE(v.length, 5 + k.length);
  v.copy(b, 9 + k.length);
  return b;
}

interface Craft {
  entries: Entry[];
  raw?: Buffer;
  compressed?: Buffer;
  records?: number;
  meta?: number;
  rawLength?: number;
  version?: number;
  flags?: number;
}

function craft(c: Craft): Buffer {
  const raw = c.raw ?? Buffer.concat(c.entries.map(entryBytes));
  const body = c.compressed ?? deflateRawSync(raw);
  const h = Buffer.alloc(72);
  h.write('AGMSNAP\n', 0, 'latin1');
  h.writeUInt16LE(c.version ?? 1, 8);
  h.writeUInt16LE(c.flags ?? 1, 10);
  h.writeUInt32LE(72, 12);
  h.writeBigUInt64LE(BigInt(c.records ?? c.entries.filter((e) => e[0] === 1).length), 16);
  h.writeBigUInt64LE(BigInt(c.meta ?? c.entries.filter((e) => e[0] === 2).length), 24);
  h.writeBigUInt64LE(BigInt(body.length), 32);
  h.writeBigUInt64LE(BigInt(c.rawLength ?? raw.length), 40);
  h.writeBigUInt64LE(BigInt(Date.now()), 48);
  h.writeUInt32LE(crc32(body), 56);
  h.writeUInt32LE(crc32(raw), 60);
  h.writeUInt32LE(crc32(h.subarray(0, 68)), 68);
  return Buffer.concat([h, body]);
}

const GOOD: Entry[] = [
  [2, 'vv', '{"a":1}'],
  [1, 'task/1', 'one'],
  [1, 'task/2', 'two'],
];

test('a hand-built snapshot in the documented format imports', async () => {
  const work = await tempDir();
  const file = join(work, 'ok.snap');
  await writeFile(file, craft({ entries: GOOD }));
  const result = await DurableStore.importSnapshot(join(work, 'db'), file);
  assert.equal(result.records, 2);
  assert.equal(result.meta, 1);
  const s = await DurableStore.open(join(work, 'db'));
  try {
    const all = await s.loadRecords();
    assert.deepEqual(
      [...all].map(([k, v]) => [k, Buffer.from(v).toString()]),
      [
        ['task/1', 'one'],
        ['task/2', 'two'],
      ],
    );
    assert.equal(Buffer.from((await s.getMeta('vv')) as Uint8Array).toString(), '{"a":1}');
  } finally {
    await s.close();
  }
});

test('content errors behind valid checksums give SNAPSHOT_INVALID and write nothing', async () => {
  const work = await tempDir();
  const full = Buffer.concat(GOOD.map(entryBytes));
  const cases: Array<[string, Buffer, RegExp]> = [
    ['record count too high', craft({ entries: GOOD, records: 3 }), /counts/],
    ['meta count too low', craft({ entries: GOOD, meta: 0 }), /counts/],
    ['unknown entry kind', craft({ entries: [...GOOD, [9, 'x', 'y']] }), /kind/],
    ['empty key', craft({ entries: [[1, '', 'v']] }), /key length/],
    ['body ends inside an entry', craft({ entries: GOOD, raw: full.subarray(0, full.length - 2) }), /inside an entry/],
    ['raw length understated', craft({ entries: GOOD, rawLength: full.length - 5 }), /longer than the header/],
    ['raw length overstated', craft({ entries: GOOD, rawLength: full.length + 5 }), /raw length/],
    ['not deflate data', craft({ entries: GOOD, compressed: Buffer.alloc(64, 0xff) }), /decompress/],
    ['future version', craft({ entries: GOOD, version: 2 }), /version/],
    ['unknown flags', craft({ entries: GOOD, flags: 3 }), /flags/],
    ['key not valid for the store', craft({ entries: [[1, 'x'.repeat(5000), 'v']] }), /longer than/],
  ];
  for (const [name, bytes, message] of cases) {
    const file = join(work, 'bad.snap');
    await writeFile(file, bytes);
    const target = join(work, `db-${name.replace(/\W/g, '-')}`);
    await assert.rejects(DurableStore.importSnapshot(target, file), (err: unknown) => {
      assert.ok(err instanceof StoreError, `${name}: ${String(err)}`);
      assert.equal(err.code, 'SNAPSHOT_INVALID', `${name}: ${err.message}`);
      assert.match(err.message, message, name);
      return true;
    });
    await assert.rejects(readdir(target), { code: 'ENOENT' }, `${name}: target directory was created`);
  }
});
