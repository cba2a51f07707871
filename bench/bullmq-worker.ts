/**
 * The brokered baseline's worker process: a BullMQ worker on one redis-server that answers every
 * job at once (like the mesh benchmark's trivial agent), appending job ids to BENCH_RUN_LOG when
 * set. Usage: bullmq-worker.ts <redisPort> <queue> <concurrency>. Stops on SIGTERM or stdin end.
 */
import { appendFileSync } from 'node:fs';
import { Queue, Worker } from 'bullmq';

const [port, queue, concurrency] = process.argv.slice(2);
const runLog = process.env.BENCH_RUN_LOG;
const connection = { host: '127.0.0.1', port: Number(port) };
// Whoever first opens the queue fixes the events stream's length (BullMQ's default keeps 10k
// events, fewer than a run writes): open it here, before the worker, with room for every event.
const meta = new Queue(queue as string, { connection, streams: { events: { maxLen: 1_000_000 } } });
await meta.waitUntilReady();
await meta.close();
const worker = new Worker(
  queue as string,
  async (job) => {
    if (runLog) appendFileSync(runLog, `${job.id}\n`);
    return { echo: job.data as unknown };
  },
  { connection, concurrency: Number(concurrency) },
);
await worker.waitUntilReady();
process.stdout.write('ready\n');
const stop = (): void => {
  // A close that hangs (the broker gone) must not keep the process alive.
  setTimeout(() => process.exit(0), 2000).unref();
  void worker.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
