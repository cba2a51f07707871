import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import {
  AGENT_FIXTURES,
  MeshProcess,
  REPO_ROOT,
  shutdownNodes,
  taskEnded,
  until,
  waitFor,
  writeAgentsFile,
} from '../helpers/mesh-process.js';

/** Debian's Chromium (scripts/install-test-deps.sh); Playwright cannot download a browser here. */
const CHROMIUM = '/usr/bin/chromium';
/** The machine's closed network refuses Chromium's background connections: turn them off. */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const ARTEFACTS = join(REPO_ROOT, 'test-results');

interface Task {
  id: string;
  status: string;
  progress: number;
}

/**
 * The dashboard in Chromium against two real nodes: the page is served by node a, which runs no
 * agent; node b runs a stdio agent that reports progress step by step. Tasks are submitted
 * through b's API, so everything the page shows about them reached a by replication.
 */
describe('dashboard', { timeout: 120_000 }, () => {
  let dir = '';
  let profile = '';
  let a: MeshProcess;
  let b: MeshProcess;
  const nodes: MeshProcess[] = [];
  let context: BrowserContext | undefined;
  let page: Page;
  /** What went wrong in the browser: console errors, page errors, failed or foreign requests. */
  const problems: string[] = [];

  function watch(p: Page, node: MeshProcess): void {
    const origin = new URL(node.api).origin;
    p.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    p.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    p.on('requestfailed', (r) => problems.push(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
    p.on('response', (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
    });
    p.on('request', (r) => {
      if (new URL(r.url()).origin !== origin) problems.push(`request outside the node: ${r.url()}`);
    });
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-dashboard-'));
    profile = mkdtempSync(join(tmpdir(), 'mesh-dashboard-chromium-'));
    const agents = writeAgentsFile(dir, [
      {
        id: 'stepper',
        mode: 'stdio',
        command: join(AGENT_FIXTURES, 'progress-agent.py'),
        capabilities: ['progress'],
        concurrency: 4,
      },
    ]);
    a = await new MeshProcess({ name: 'alpha' }).start();
    nodes.push(a);
    b = await new MeshProcess({ name: 'beta', join: [a.addr], extraArgs: ['--agents', agents] }).start();
    nodes.push(b);
    await waitFor(
      async () => {
        const list = await a.get<Array<{ id: string; state: string }>>('/v1/agents');
        return list.some((x) => x.id === 'stepper' && x.state === 'RUNNING');
      },
      20_000,
      "b's agent to show RUNNING on a",
    );

    // A fresh profile every run: nothing cached, no token left in storage from another run.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      viewport: { width: 1440, height: 1100 },
      timeout: 30_000,
    });
    page = context.pages()[0] ?? (await context.newPage());
    watch(page, a);
  });

  after(async () => {
    await context?.close().catch(() => {});
    await shutdownNodes(nodes);
    rmSync(dir, { recursive: true, force: true });
    rmSync(profile, { recursive: true, force: true });
  });

  it('loads with no console errors and no failed requests, and shows both nodes and the agent', async () => {
    const res = await page.goto(`${a.api}/`, { waitUntil: 'load', timeout: 15_000 });
    assert.equal(res?.status(), 200);
    await page.locator('[data-stream="open"]').waitFor({ timeout: 10_000 });
    await page.locator(`tr[data-node-id="${b.id}"]`).waitFor({ timeout: 10_000 });
    await page.locator('tr[data-agent-id="stepper"]').waitFor({ timeout: 10_000 });
    assert.match((await page.locator(`tr[data-node-id="${b.id}"]`).textContent()) ?? '', /beta/);
    assert.match((await page.locator('tr[data-agent-id="stepper"]').textContent()) ?? '', /RUNNING/);
    // A few polls of /v1/status, /v1/peers and /metrics, and a chart with data.
    await page.locator('.chart canvas').nth(1).waitFor({ timeout: 10_000 });
    assert.deepEqual(problems, [], 'nothing went wrong in the browser');
  });

  it('shows a task submitted on the other node, and its progress bar moves', async () => {
    // Some context for the board (and the screenshot): one task done, one nobody can run.
    for (const body of [
      {
        id: 'dash-quick',
        type: 'progress',
        title: 'Quick one',
        capabilities: ['progress'],
        payload: { steps: 2, stepMs: 50 },
      },
      { id: 'dash-waiting', type: 'render', title: 'Needs a GPU', capabilities: ['gpu'] },
    ]) {
      const r = await b.call('POST', '/v1/tasks', body);
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    await taskEnded<Task>(b, 'dash-quick');

    const submitted = Date.now();
    const created = await b.call('POST', '/v1/tasks', {
      id: 'dash-long',
      type: 'progress',
      title: 'Long running',
      capabilities: ['progress'],
      payload: { steps: 100, stepMs: 300 },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const card = page.locator('[data-task-id="dash-long"]');
    await card.waitFor({ timeout: 10_000 });
    const seenAfterMs = Date.now() - submitted;

    const bar = card.locator('[role="progressbar"]');
    const valueOf = async (): Promise<number> => Number(await bar.getAttribute('aria-valuenow', { timeout: 10_000 }));
    const first = await until(valueOf, (v) => v > 0 && v < 100, 15_000, 'the progress bar to start moving', 50);
    const later = await until(valueOf, (v) => v > first, 10_000, `the progress bar to move past ${first}%`, 50);
    assert.ok(later < 100, `the task is still running (${later}%)`);
    assert.equal(await card.getAttribute('data-status'), 'IN_PROGRESS');
    // The column it sits in says the same.
    assert.equal(await page.locator('[data-column="IN_PROGRESS"] [data-task-id="dash-long"]').count(), 1);
    assert.equal(await page.locator('[data-column="COMPLETED"] [data-task-id="dash-quick"]').count(), 1);
    assert.equal(await page.locator('[data-column="PENDING"] [data-task-id="dash-waiting"]').count(), 1);
    process.stdout.write(
      `# dashboard: task on the page ${seenAfterMs} ms after submission; progress ${first}% -> ${later}%\n`,
    );

    // The detail, with the task's log as it grows, for the screenshot.
    await card.click();
    const detail = page.locator('[data-detail-id="dash-long"]');
    await detail.waitFor({ timeout: 5_000 });
    await until(
      async () => (await detail.locator('pre.log').textContent()) ?? '',
      (log) => log.includes('finished step'),
      10_000,
      "the agent's log in the task detail",
      100,
    );
    mkdirSync(ARTEFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTEFACTS, 'dashboard.png'), fullPage: true, timeout: 15_000 });
    // The README's picture: refreshed only on demand, so that a test run leaves the tree clean.
    if (process.env.MESH_UPDATE_DOCS === '1') {
      await page.screenshot({ path: join(REPO_ROOT, 'docs/dashboard.png'), fullPage: true, timeout: 15_000 });
    }
    assert.deepEqual(problems, [], 'nothing went wrong in the browser');
  });

  it('cancels a task from the page', async () => {
    const detail = page.locator('[data-detail-id="dash-long"]');
    await detail.getByRole('button', { name: 'Cancel task' }).click({ timeout: 5_000 });
    // The cancel reached the node that runs it (b) and came back to a.
    const onB = await taskEnded<Task>(b, 'dash-long');
    assert.equal(onB.status, 'CANCELLED', JSON.stringify(onB));
    const onA = await taskEnded<Task>(a, 'dash-long');
    assert.equal(onA.status, 'CANCELLED');
    assert.ok(onB.progress < 100, `stopped before the end (${onB.progress}%)`);
    await page.locator('[data-column="CANCELLED"] [data-task-id="dash-long"]').waitFor({ timeout: 10_000 });
    assert.equal(await detail.getByRole('button', { name: 'Cancel task' }).isDisabled(), true);
    assert.deepEqual(problems, [], 'nothing went wrong in the browser');
  });

  it('retries a failed task from the page', async () => {
    const created = await b.call('POST', '/v1/tasks', {
      id: 'dash-flaky',
      type: 'progress',
      title: 'Fails once',
      capabilities: ['progress'],
      payload: { steps: 2, stepMs: 50, failUntilAttempt: 2 },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const failed = await taskEnded<Task>(a, 'dash-flaky');
    assert.equal(failed.status, 'FAILED', JSON.stringify(failed));
    const card = page.locator('[data-column="FAILED"] [data-task-id="dash-flaky"]');
    await card.waitFor({ timeout: 10_000 });
    await card.click();
    const detail = page.locator('[data-detail-id="dash-flaky"]');
    await detail.getByRole('button', { name: 'Retry task' }).click({ timeout: 5_000 });
    const done = await until(
      () => b.get<Task & { attempt: number }>('/v1/tasks/dash-flaky'),
      (t) => t.status === 'COMPLETED',
      15_000,
      'dash-flaky COMPLETED on b after the retry',
    );
    assert.equal(done.attempt, 2);
    await page.locator('[data-column="COMPLETED"] [data-task-id="dash-flaky"]').waitFor({ timeout: 10_000 });
    // The failed first attempt is in the detail's history.
    await detail.getByRole('cell', { name: 'FLAKY' }).waitFor({ timeout: 5_000 });
    assert.deepEqual(problems, [], 'nothing went wrong in the browser');
  });

  it('submits a task from the page, with a clear error for a payload that is not JSON', async () => {
    const form = page.getByRole('form', { name: 'submit a task' });
    await form.locator('input[name="type"]').fill('progress');
    await form.locator('input[name="title"]').fill('From the page');
    await form.locator('input[name="capabilities"]').fill('progress');
    await form.locator('textarea[name="payload"]').fill('{"steps": 3,');
    await form.getByRole('button', { name: 'Submit task' }).click();
    const alert = form.getByRole('alert');
    await alert.waitFor({ timeout: 5_000 });
    assert.match((await alert.textContent()) ?? '', /payload is not valid JSON/);
    const before = await a.get<Task[]>('/v1/tasks');
    assert.equal(before.filter((t) => (t as Task & { title: string }).title === 'From the page').length, 0);

    const detail = page.locator('[data-detail-id]');
    const shown = await detail.getAttribute('data-detail-id', { timeout: 5_000 });
    await form.locator('textarea[name="payload"]').fill('{"steps": 3, "stepMs": 50}');
    await form.getByRole('button', { name: 'Submit task' }).click();
    // The new task opens in the detail; it runs on b's agent and completes.
    await until(
      () => detail.getAttribute('data-detail-id', { timeout: 5_000 }),
      (id) => id !== null && id !== shown,
      10_000,
      'the submitted task in the detail',
    );
    const id = (await detail.getAttribute('data-detail-id')) as string;
    const done = await taskEnded<Task & { result: unknown }>(b, id);
    assert.equal(done.status, 'COMPLETED', JSON.stringify(done));
    assert.deepEqual(done.result, { steps: 3 });
    await page.locator(`[data-column="COMPLETED"] [data-task-id="${id}"]`).waitFor({ timeout: 10_000 });
    assert.equal(await form.getByRole('alert').count(), 0, 'the error went away');
    assert.deepEqual(problems, [], 'nothing went wrong in the browser');
  });

  it('pauses and resumes an agent from the page of a node that does not run it', async () => {
    // a forwards the control to b, the agent's node, over libp2p.
    const row = page.locator('tr[data-agent-id="stepper"]');
    const stateOnB = async () => (await b.get<{ state: string }>('/v1/agents/stepper')).state;
    await row.getByRole('button', { name: 'pause' }).click({ timeout: 5_000 });
    await until(stateOnB, (s) => s === 'PAUSED', 10_000, 'stepper PAUSED on b');
    // The change comes back to the page by replication: the row offers resume.
    await row.getByRole('button', { name: 'resume' }).waitFor({ timeout: 10_000 });
    assert.match((await row.textContent()) ?? '', /PAUSED/);
    await row.getByRole('button', { name: 'resume' }).click({ timeout: 5_000 });
    await until(stateOnB, (s) => s === 'RUNNING', 10_000, 'stepper RUNNING again on b');
    await row.getByRole('button', { name: 'pause' }).waitFor({ timeout: 10_000 });
    assert.equal(await row.getByRole('alert').count(), 0, 'no error under the buttons');
    assert.deepEqual(problems, [], 'nothing went wrong in the browser');
  });
});

/**
 * A node with a bearer token: the page shell is public and holds no data; the app asks for the
 * token, keeps it for the tab and sends it as a header (the event stream included).
 */
describe('dashboard with a token', { timeout: 90_000 }, () => {
  const TOKEN = 'dashboard-test-token-1234';
  let node: MeshProcess;
  let profile = '';
  let context: BrowserContext | undefined;

  before(async () => {
    profile = mkdtempSync(join(tmpdir(), 'mesh-dashboard-chromium-'));
    node = await new MeshProcess({ name: 'locked', extraArgs: ['--token', TOKEN] }).start();
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      timeout: 30_000,
    });
  });

  after(async () => {
    await context?.close().catch(() => {});
    await shutdownNodes([node]);
    rmSync(profile, { recursive: true, force: true });
  });

  it('serves the shell without the token, and nothing else', async () => {
    const shell = await fetch(`${node.api}/`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(shell.status, 200);
    const text = await shell.text();
    assert.ok(!text.includes(node.id), 'the shell names no node');
    assert.match(shell.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    const status = await fetch(`${node.api}/v1/status`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(status.status, 401);
    await status.body?.cancel();
  });

  it('asks for the token, refuses a wrong one, and goes live with the right one', async () => {
    assert.ok(context !== undefined);
    const page = context.pages()[0] ?? (await context.newPage());
    const problems: string[] = [];
    const authorized: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (m) => {
      // The browser reports every 401 on the console; those are expected until the token is given.
      if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push(`console: ${m.text()}`);
    });
    page.on('request', (r) => {
      if (r.url().includes(TOKEN)) problems.push(`token in a URL: ${r.url()}`);
      if (r.headers().authorization === `Bearer ${TOKEN}`) authorized.push(new URL(r.url()).pathname);
    });

    await page.goto(`${node.api}/`, { waitUntil: 'load', timeout: 15_000 });
    const form = page.getByRole('form', { name: 'API token' });
    await form.waitFor({ timeout: 10_000 });
    await form.locator('input[name="token"]').fill('not-the-token');
    await form.getByRole('button', { name: 'Unlock' }).click();
    await form.getByText('The node refused that token.').waitFor({ timeout: 10_000 });

    await form.locator('input[name="token"]').fill(TOKEN);
    await form.getByRole('button', { name: 'Unlock' }).click();
    await page.locator('[data-stream="open"]').waitFor({ timeout: 10_000 });
    await page.locator(`tr[data-node-id="${node.id}"]`).waitFor({ timeout: 10_000 });
    // A change made now reaches the page over the (authorized) event stream.
    const created = await fetch(`${node.api}/v1/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'locked-1', type: 'noop', title: 'Behind a token', capabilities: ['nobody'] }),
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(created.status, 201);
    await created.body?.cancel();
    await page.locator('[data-column="PENDING"] [data-task-id="locked-1"]').waitFor({ timeout: 10_000 });
    for (const path of ['/v1/events', '/v1/status', '/v1/tasks']) {
      assert.ok(authorized.includes(path), `${path} was requested with the token as a header`);
    }
    // Kept for the tab: a reload goes live without asking again.
    await page.reload({ waitUntil: 'load', timeout: 15_000 });
    await page.locator('[data-stream="open"]').waitFor({ timeout: 10_000 });
    assert.equal(await form.count(), 0, 'no token form after a reload');
    assert.deepEqual(problems, []);
  });
});
