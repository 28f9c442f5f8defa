// The engine: connections served by their environment's event loop, not by threads, and the
// blocking fallbacks for what the loop cannot do without waiting (a token larger than the socket
// can buffer, a command larger than its free send space). All against the realm's remctld.

import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, test } from 'vitest';
import { Remctl, spawn } from '../dist/index.js';
import { addon } from '../dist/addon.js';
import { counts, settledCounts } from './metrics.mjs';
import { realm } from './realm-context.mjs';
import { bigPattern } from './realm.mjs';
import { splittingProxy } from './fault-servers.js';

const settings = realm();
const where = { port: settings.port, principal: settings.principal };
const target = { host: settings.host, ...where };

const open = new Set<Remctl>();
afterEach(async () => {
  await Promise.allSettled([...open].map((connection) => connection.close()));
  open.clear();
});

/** Opens count connections, at most `width` opens at a time (remctld's listen backlog is 5). */
async function connectMany(count: number, width = 8): Promise<Remctl[]> {
  const connections: Remctl[] = [];
  for (let i = 0; i < count; i += width) {
    const batch = await Promise.all(Array.from({ length: Math.min(width, count - i) }, () => Remctl.connect(settings.host, where)));
    for (const connection of batch) {
      open.add(connection);
      connections.push(connection);
    }
  }
  return connections;
}

describe('connections on the event loop', () => {
  test('200 open, idle connections hold no thread each and 2 descriptors each, and a noop on all of them at once succeeds', async () => {
    const before = await settledCounts();
    const connections = await connectMany(200);
    const idle = counts();
    // Threads of ours that wait idle for the next open are not counted; every other one is.
    expect(idle.threads).toBe(before.threads);
    expect(addon.threads().threads).toBeLessThanOrEqual(4);
    // The socket and libremctl's duplicate of it.
    expect(idle.fds - before.fds).toBeLessThanOrEqual(2 * connections.length);
    expect(idle.fds - before.fds).toBeGreaterThanOrEqual(connections.length);
    const outcomes = await Promise.allSettled(connections.map((connection) => connection.noop()));
    expect(outcomes.filter((outcome) => outcome.status === 'rejected')).toStrictEqual([]);
    const { stdout } = await connections[0]!.run(['test', 'test'], { encoding: 'utf8' });
    expect(stdout).toBe('hello world\n');
  });

  test('connections in a worker_thread are served by that worker\'s loop, while the main thread\'s loop is blocked', async () => {
    const source = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.library).then(async ({ Remctl }) => {
        const connection = await Remctl.connect(workerData.host, workerData.where);
        parentPort.postMessage('open');
        const started = Date.now();
        const outputs = [];
        for (let i = 0; i < 20; i++) outputs.push((await connection.run(['test', 'test'], { encoding: 'utf8' })).stdout);
        const ms = Date.now() - started;
        await connection.close();
        parentPort.postMessage({ outputs, ms, done: Date.now() });
      });`;
    const worker = new Worker(source, {
      eval: true,
      workerData: { library: new URL('../dist/index.js', import.meta.url).href, host: settings.host, where },
    });
    const messages: unknown[] = [];
    const received = new Promise<void>((resolve, reject) => {
      worker.on('message', (message) => {
        messages.push(message);
        if (messages.length === 2) resolve();
      });
      worker.on('error', reject);
    });
    while (messages.length === 0) await sleep(5);
    // The main thread's loop is stuck for 3 s: nothing of it can serve the worker's calls.
    const blockedUntil = Date.now() + 3000;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3000);
    await received;
    await worker.terminate();
    const report = messages[1] as { outputs: string[]; ms: number; done: number };
    expect(report.outputs).toStrictEqual(Array(20).fill('hello world\n'));
    expect(report.done).toBeLessThan(blockedUntil);
  });
});

describe('the blocking fallbacks', () => {
  test('output in tokens larger than the socket can buffer arrives whole, read by a thread as it comes', async () => {
    const handle = new addon.RemctlHandle();
    // A receive buffer of 16 KiB (the kernel doubles it, and will not wait for more than half)
    // cannot hold one of remctld's 64 KiB tokens.
    handle.setSocketBuffers(16384, 0);
    expect(await handle.open(target)).toBeUndefined();
    const result = await handle.run(['test', 'big', '1000000'], 0);
    expect(result.ok).toBe(true);
    expect(result.stdout.equals(bigPattern(1_000_000))).toBe(true);
    // The connection is still in step: the next command's output is its own.
    const next = await handle.run(['test', 'test'], 0);
    expect(next.stdout.toString()).toBe('hello world\n');
    await handle.close();
  });

  test('a small token that arrives in pieces after tokens a thread read is waited for, not read half there', async () => {
    // A receive buffer the kernel keeps at its minimum: every 4 KiB output token is read by a
    // thread as it comes. The proxy holds back the end of each piece, the status token's
    // included, so what the loop counted as buffered before a thread's read is stale after it.
    const proxy = await splittingProxy(settings.port, 8, 20);
    try {
      const handle = new addon.RemctlHandle();
      handle.setSocketBuffers(1, 0);
      expect(await handle.open({ host: settings.host, port: proxy.port, principal: settings.principal })).toBeUndefined();
      for (let round = 0; round < 3; round++) {
        const result = await handle.run(['test', 'big', '40000'], 0);
        expect({ ok: result.ok, message: result.message, status: result.status }).toStrictEqual({ ok: true, message: undefined, status: 0 });
        expect(result.stdout.equals(bigPattern(40_000))).toBe(true);
      }
      await handle.close();
    } finally {
      await proxy.close();
    }
  });

  test('a command larger than the free send space is sent whole, by a thread', async () => {
    const handle = new addon.RemctlHandle();
    handle.setSocketBuffers(0, 4096);
    expect(await handle.open(target)).toBeUndefined();
    const parts = ['a', 'b', 'c'].map((letter) => letter.repeat(100_000));
    const result = await handle.run(['test', 'echo', ...parts], 0);
    expect(result.ok).toBe(true);
    expect(result.stdout.toString()).toBe(parts.map((part) => `${part}\n`).join(''));
    await handle.close();
  });
});

/** Bytes this process's connections to the realm's remctld have taken from it, per the kernel. */
function bytesReceived(): number {
  const text = execFileSync('ss', ['-tniH', 'state', 'established', `( dport = :${settings.port} )`], { encoding: 'utf8' });
  return [...text.matchAll(/bytes_received:(\d+)/g)].reduce((sum, match) => sum + Number(match[1]), 0);
}

describe('backpressure', () => {
  test('a paused stream stops reading from the socket: the bytes taken from the server stop growing, and resume with it', async () => {
    const size = 64 * 1024 * 1024;
    const before = bytesReceived();
    const child = spawn(settings.host, ['test', 'big', String(size)], where);
    child.stdout.pause();
    child.stderr.resume();
    // Let the kernel's buffers fill: then nothing more is taken while the stream stays full.
    await sleep(1000);
    const paused = bytesReceived() - before;
    await sleep(1000);
    const stillPaused = bytesReceived() - before;
    expect(paused).toBeGreaterThan(0);
    expect(paused).toBeLessThan(size / 4);
    expect(stillPaused).toBe(paused);
    let bytes = 0;
    child.stdout.on('data', (chunk: Buffer) => (bytes += chunk.length));
    child.stdout.resume();
    expect(await child.status).toBe(0);
    expect(bytes).toBe(size);
  });
});
