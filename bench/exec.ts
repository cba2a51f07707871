/**
 * `npm run bench -- exec`: what running tasks on agents costs, measured the way users run them.
 * One node process started through the CLI hosts a trivial stdio agent (concurrency 16), a
 * trivial exec script and the MCP reference server; client processes outside the node submit and
 * assign tasks through the HTTP API and wait for COMPLETED on the node's event stream. Each row
 * has its baseline from the same run: the same agent called directly by a client process (over
 * its pipe, by spawning the script, through the MCP SDK client), with no node in between.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { MeshProcess } from '../test/helpers/mesh-process.js';
import { type ClientResult, runClient, spreadOf } from './client-process.js';
import { median, percentile, round, type Row } from './util.js';

const HERE = import.meta.dirname;
const STDIO_AGENT = resolve(HERE, 'agents/trivial-stdio.mjs');
const EXEC_AGENT = resolve(HERE, 'agents/trivial-exec.sh');
const MCP_SERVER = resolve(HERE, '../node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const REPEATS = Number(process.env.MESH_BENCH_REPEATS ?? 3);

const perSecond = (r: ClientResult): number => (r.latencies.length * 1000) / r.wallMs;

/** Throughput over REPEATS runs: the median, and the spread as min-max. */
async function throughput(cfg: Record<string, unknown>): Promise<{ median: number; spread: string }> {
  const xs: number[] = [];
  for (let i = 0; i < REPEATS; i++) xs.push(perSecond(await runClient(cfg)));
  return { median: median(xs), spread: spreadOf(xs) };
}

function latencyRow(measure: string, mesh: number[], direct: number[]): Row {
  const p50 = percentile(mesh, 50);
  const d50 = percentile(direct, 50);
  return {
    measure,
    'mesh p50 ms': round(p50, 2),
    'mesh p99 ms': round(percentile(mesh, 99), 2),
    'direct p50 ms': round(d50, 3),
    'direct p99 ms': round(percentile(direct, 99), 3),
    'overhead p50 ms': round(p50 - d50, 2),
    'ratio p50': round(p50 / d50, 1),
    n: mesh.length,
  };
}

export async function benchExec(): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-bench-exec-'));
  const agentsFile = join(dir, 'agents.json');
  writeFileSync(
    agentsFile,
    JSON.stringify({
      agents: [
        { id: 'trivial', mode: 'stdio', command: process.execPath, args: [STDIO_AGENT], concurrency: 16 },
        { id: 'script', mode: 'exec', command: EXEC_AGENT, capabilities: ['script'], concurrency: 16 },
        { id: 'mcp', mode: 'mcp', command: process.execPath, args: [MCP_SERVER, 'stdio'], concurrency: 16 },
      ],
    }),
  );
  const node = await new MeshProcess({ name: 'bench', extraArgs: ['--agents', agentsFile] }).start();
  const rows: Row[] = [];
  try {
    const api = { mode: 'api', api: node.api };
    const stdioDirect = { mode: 'direct-stdio', command: process.execPath, args: [STDIO_AGENT] };

    // 1. Throughput: one trivial stdio agent at concurrency 16, 32 tasks in flight from the client.
    const meshTp = await throughput({ ...api, agent: 'trivial', count: 2000, inFlight: 32 });
    const directTp = await throughput({ ...stdioDirect, count: 20_000, inFlight: 16 });
    rows.push({
      measure: 'stdio tasks completed per second (1 node, 1 agent at concurrency 16)',
      mesh: round(meshTp.median, 0),
      'mesh spread': meshTp.spread,
      direct: round(directTp.median, 0),
      'direct spread': directTp.spread,
      'ratio direct/mesh': round(directTp.median / meshTp.median, 1),
      'per-task overhead ms': round(1000 / meshTp.median - 1000 / directTp.median, 3),
    });

    // 2. Per-task latency, one task at a time.
    const stdioMesh = await runClient({ ...api, agent: 'trivial', count: 300, inFlight: 1 });
    const stdioDirectLat = await runClient({ ...stdioDirect, count: 300, inFlight: 1 });
    rows.push(
      latencyRow('stdio task, submit -> COMPLETED event (1 at a time)', stdioMesh.latencies, stdioDirectLat.latencies),
    );

    const execMesh = await runClient({ ...api, agent: 'script', count: 150, inFlight: 1 });
    const execDirect = await runClient({ mode: 'direct-exec', command: EXEC_AGENT, count: 150, inFlight: 1 });
    rows.push(
      latencyRow('exec task, submit -> COMPLETED event vs spawn -> exit', execMesh.latencies, execDirect.latencies),
    );

    const mcpPayload = { message: 'hi' };
    const mcpMesh = await runClient({
      ...api,
      agent: 'mcp',
      capability: 'echo',
      payload: mcpPayload,
      count: 300,
      inFlight: 1,
    });
    const mcpDirect = await runClient({
      mode: 'direct-mcp',
      command: process.execPath,
      args: [MCP_SERVER, 'stdio'],
      tool: 'echo',
      payload: mcpPayload,
      count: 300,
      inFlight: 1,
    });
    rows.push(
      latencyRow('mcp tool call, submit -> COMPLETED event vs SDK callTool', mcpMesh.latencies, mcpDirect.latencies),
    );

    const execTp = await throughput({ ...api, agent: 'script', count: 500, inFlight: 32 });
    const execDirectTp = await throughput({ mode: 'direct-exec', command: EXEC_AGENT, count: 500, inFlight: 16 });
    rows.push({
      measure: 'exec tasks completed per second (1 node, concurrency 16)',
      mesh: round(execTp.median, 0),
      'mesh spread': execTp.spread,
      direct: round(execDirectTp.median, 0),
      'direct spread': execDirectTp.spread,
      'ratio direct/mesh': round(execDirectTp.median / execTp.median, 1),
      'per-task overhead ms': round(1000 / execTp.median - 1000 / execDirectTp.median, 3),
    });
  } finally {
    await node.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
