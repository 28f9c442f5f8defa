// The native engine under conditions a normal call never meets: the signals its threads take,
// a promise whose settlement throws, a thread that cannot be started, and an environment that
// ends with calls in flight and calls queued behind them.

import { spawn as spawnProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, test } from 'vitest';
import { Remctl, _remctl } from '../dist/index.js';
import { scriptedServer, type TestServer } from './fault-servers.js';
import { runNode } from './probes.js';
import { realm } from './realm-context.mjs';
import { freePort } from './realm-control.mjs';
import { remctlThreads, unblockedSignals } from './thread-masks.mjs';

const SYNC_THREADS = fileURLToPath(new URL('./fixtures/sync-threads.mjs', import.meta.url));
const NO_THREADS = fileURLToPath(new URL('./fixtures/no-threads.mjs', import.meta.url));
const TEARDOWN_QUEUED = fileURLToPath(new URL('./fixtures/teardown-queued.mjs', import.meta.url));

const settings = realm();
const where = { port: settings.port, principal: settings.principal };

const connections = new Set<Remctl>();
afterEach(async () => {
  await Promise.allSettled([...connections].map((connection) => connection.close()));
  connections.clear();
});

async function connect(options: { idleTimeout?: number } = {}): Promise<Remctl> {
  const connection = await Remctl.connect(settings.host, { ...where, ...options });
  connections.add(connection);
  return connection;
}

describe('the threads the addon starts', () => {
  test('the threads that open connections block every signal, no other thread of ours exists, and the JavaScript thread keeps its own mask', async () => {
    const mainBefore = unblockedSignals(process.pid);
    await Promise.all([connect({ idleTimeout: 30000 }), connect({ idleTimeout: 30000 }), connect({ idleTimeout: 30000 })]);
    // The opens' threads stay a few seconds, idle, for the next open.
    const threads = remctlThreads();
    expect(threads.filter((thread) => thread.name === 'remctl').length).toBeGreaterThanOrEqual(1);
    expect(threads.filter((thread) => thread.name !== 'remctl')).toStrictEqual([]);
    // SIGINT, SIGTERM, SIGUSR1, SIGPIPE, SIGCHLD and SIGALRM among them: no thread of ours
    // leaves any standard signal unblocked.
    expect(threads.map(({ name, unblocked }) => ({ name, unblocked }))).toStrictEqual(
      threads.map(({ name }) => ({ name, unblocked: [] })),
    );
    expect(unblockedSignals(process.pid)).toStrictEqual(mainBefore);
  });

  test('a synchronous call runs its command on the JavaScript thread; only its open runs on a thread of ours, which blocks every signal and is gone when the call returns; the mask is left as it was', async () => {
    const result = await runNode([SYNC_THREADS], settings);
    expect({ code: result.code, signal: result.signal, stderr: result.stderr }).toStrictEqual({ code: 0, signal: null, stderr: '' });
    const report = JSON.parse(result.stdout);
    expect(report.status).toBe(0);
    expect(report.sawCall).toBe(true);
    // The open's thread (it bounds a KDC that never answers by connectTimeout), if the watcher
    // caught it, and nothing else.
    expect(report.threads.map(({ name, unblocked }: { name: string; unblocked: string[] }) => ({ name, unblocked }))).toStrictEqual(
      report.threads.map(() => ({ name: 'remctl-open', unblocked: [] })),
    );
    expect(report.threadsAfter).toStrictEqual([]);
    // Node's main thread blocks nothing; the call must leave it so.
    expect(report.mainAfter).toStrictEqual(report.mainBefore);
    expect(report.mainBefore.length).toBeGreaterThan(0);
  });
});

describe('a promise whose settlement fails', () => {
  test('a call whose result cannot be handed to JavaScript rejects with the error that settling raised, instead of staying pending', async () => {
    // The native side hands a token over as an array of 3 whose elements it sets: a setter on
    // Array.prototype that throws makes exactly that step fail, as running out of memory would.
    const failure = new Error('settling failed on purpose');
    const r = _remctl.remctl_new();
    expect(await _remctl.remctl_open(r, settings.host, settings.port, settings.principal)).toBe(true);
    expect(await _remctl.remctl_commandv(r, ['test', 'test'])).toBe(true);
    let armed = true;
    Object.defineProperty(Array.prototype, '0', {
      configurable: true,
      set(this: unknown[], value: unknown) {
        if (armed && this.length === 3) throw failure;
        Object.defineProperty(this, '0', { value, writable: true, enumerable: true, configurable: true });
      },
    });
    try {
      const outcome = await Promise.race([
        _remctl.remctl_output(r).then(
          () => 'resolved',
          (error: unknown) => error,
        ),
        sleep(10_000).then(() => 'still pending after 10 s'),
      ]);
      expect(outcome).toBe(failure);
    } finally {
      armed = false;
      delete (Array.prototype as unknown as Record<string, unknown>)['0'];
      await _remctl.remctl_close(r);
    }
    // The same call, settled normally, works as before.
    const result = await _remctl.remctl(settings.host, settings.port, settings.principal, ['test', 'test']);
    expect(result.stdout.toString()).toBe('hello world\n');
  });
});

describe('a thread that cannot be started', () => {
  test('with no thread to be had (RLIMIT_NPROC), every call that needs one fails with the reason, calls that need none work, and dropped handles are finalized without one', async () => {
    const port = await freePort();
    // root is exempt from RLIMIT_NPROC: the fixture makes itself nobody first.
    const run = await runNode([NO_THREADS, String(port)], settings);
    expect({ code: run.code, signal: run.signal, stderr: run.stderr }).toStrictEqual({ code: 0, signal: null, stderr: '' });
    const reason = 'cannot start a thread for the connection: Resource temporarily unavailable';
    const results = JSON.parse(run.stdout);
    // The C layer resolves failures to false, with the reason in remctl_error.
    expect(results.open).toStrictEqual({ resolved: 'false' });
    expect(results.openAgain).toStrictEqual({ resolved: 'false' });
    expect(results.openError).toBe(reason);
    expect(results.oneShot).toStrictEqual({ resolved: reason });
    // Closing, and a command on a handle never opened, need no thread.
    expect(results.close).toStrictEqual({ resolved: 'undefined' });
    expect(results.commandUnopened).toStrictEqual({ resolved: 'false' });
    expect(results.commandUnopenedError).toBe('no connection open');
    expect(results.simple.rejected).toContain(reason);
    expect(results.connect.rejected).toContain(reason);
  });
});

describe('an environment that ends with calls in flight', () => {
  let blocked: TestServer | undefined;
  let queued: TestServer | undefined;
  afterEach(async () => {
    await Promise.all([blocked?.close(), queued?.close()]);
  });

  test('a worker_thread with 4 connections each blocked in an open, each with another open queued behind it, terminates promptly, the queued opens never run, and another worker_thread is unaffected', async () => {
    let spoke = 0;
    blocked = await scriptedServer((socket) => socket.once('data', () => spoke++));
    queued = await scriptedServer(() => {});
    const child = spawnProcess(process.execPath, [TEARDOWN_QUEUED, String(blocked.port), String(queued.port)], {
      env: { ...process.env, ...settings.env, REMCTL_TEST_REALM: JSON.stringify(settings) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      child.once('close', (code, signal) => resolve({ code, signal })),
    );
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    try {
      expect((await lines.next()).value).toBe('blocked');
      // Every open has sent its first token and waits for the reply that never comes.
      const deadline = Date.now() + 10_000;
      while (spoke < 4 && Date.now() < deadline) await sleep(20);
      expect(spoke).toBe(4);
      child.stdin.write('go\n');
      const report = JSON.parse((await lines.next()).value ?? 'null');
      expect(await exited).toStrictEqual({ code: 0, signal: null });
      expect(stderr).toBe('');
      expect(report.exitCode).toBe(1);
      // One cancel ends each wait; nothing waits on a server.
      expect(report.terminateMs).toBeLessThan(2000);
      expect(queued.accepted).toBe(0);
      expect(blocked.accepted).toBe(4);
      expect(report.stdout).toBe('hello world\n');
      expect(report.liveExitCode).toBe(1);
    } finally {
      clearTimeout(killer);
      child.kill('SIGKILL');
    }
  });
});
