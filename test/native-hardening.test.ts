// The native engine under conditions a normal call never meets: the signals its threads take,
// a promise whose settlement throws, a thread that cannot be started, and an environment that
// ends with calls in flight and calls queued behind them.

import { spawn as spawnProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import { Remctl } from '../dist/index.js';
import { realm } from './realm-context.mjs';
import { remctlThreads, unblockedSignals } from './thread-masks.mjs';

const SYNC_WATCHDOG = fileURLToPath(new URL('./fixtures/sync-watchdog.mjs', import.meta.url));

const settings = realm();
const where = { port: settings.port, principal: settings.principal };

const connections = new Set<Remctl>();
afterEach(async () => {
  await Promise.allSettled([...connections].map((connection) => connection.close()));
  connections.clear();
});

async function connect(options: { timeout?: number } = {}): Promise<Remctl> {
  const connection = await Remctl.connect(settings.host, { ...where, ...options });
  connections.add(connection);
  return connection;
}

interface NodeRun {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs a node script with the realm in its environment, killed after killAfterMs. */
function runNode(args: string[], { killAfterMs = 20_000, env = {} }: { killAfterMs?: number; env?: Record<string, string> } = {}) {
  return new Promise<NodeRun>((resolve, reject) => {
    const child = spawnProcess(process.execPath, args, {
      env: { ...process.env, ...settings.env, REMCTL_TEST_REALM: JSON.stringify(settings), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

describe('the threads the addon starts', () => {
  test('every connection thread and the timeout watchdog block every signal, and the JavaScript thread keeps its own mask', async () => {
    const mainBefore = unblockedSignals(process.pid);
    await Promise.all([connect({ timeout: 30 }), connect({ timeout: 30 }), connect({ timeout: 30 })]);
    const threads = remctlThreads();
    expect(threads.filter((thread) => thread.name === 'remctl').length).toBeGreaterThanOrEqual(3);
    expect(threads.filter((thread) => thread.name === 'remctl-watch')).toHaveLength(1);
    // SIGINT, SIGTERM, SIGUSR1, SIGPIPE, SIGCHLD and SIGALRM among them: no thread of ours
    // leaves any standard signal unblocked.
    expect(threads.map(({ name, unblocked }) => ({ name, unblocked }))).toStrictEqual(
      threads.map(({ name }) => ({ name, unblocked: [] })),
    );
    expect(unblockedSignals(process.pid)).toStrictEqual(mainBefore);
  });

  test('the timeout watchdog started by a synchronous call on the JavaScript thread blocks every signal too', async () => {
    const result = await runNode([SYNC_WATCHDOG]);
    expect({ code: result.code, signal: result.signal, stderr: result.stderr }).toStrictEqual({ code: 0, signal: null, stderr: '' });
    const report = JSON.parse(result.stdout);
    expect(report.status).toBe(0);
    expect(report.watchdogs).toHaveLength(1);
    expect(report.watchdogs[0].unblocked).toStrictEqual([]);
    // Node's main thread blocks nothing; the call must leave it so.
    expect(report.mainAfter).toStrictEqual(report.mainBefore);
    expect(report.mainBefore.length).toBeGreaterThan(0);
  });
});
