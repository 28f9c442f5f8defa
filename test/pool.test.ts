// RemctlPool against real remctlds started with -d, whose logs say how many connections they
// accepted ("accepted connection from ...") and which commands they ran: reuse, the per-target
// bound and its FIFO queue, aborts while queued, keep-alive expiry, noops, a reopen after the
// server closed an idle connection, no retry of a command once sent, one connection per ticket
// cache, close() and destroy(), a process with an idle pool exiting on its own, and 256 calls at
// once on the stock remctld without open retries.

import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { RemctlError, RemctlPool, RemctlProtocolError, remctl } from '../dist/index.js';
import { delayingProxy, silentServer } from './fault-servers.js';
import { exposeGc } from './metrics.mjs';
import { rejection, runNode } from './probes.js';
import { realm } from './realm-context.mjs';
import { dropConnections, kinit, startExtraRemctld, type ExtraRemctld } from './realm-control.mjs';

const settings = realm();
const { host } = settings;
const IDLE_POOL = fileURLToPath(new URL('./fixtures/idle-pool.mjs', import.meta.url));

// Each test gets a remctld of its own, so that its log is its own.
let daemons: ExtraRemctld[] = [];
async function remctld(): Promise<ExtraRemctld & { where: { port: number; principal: string } }> {
  const daemon = await startExtraRemctld(settings, { principal: settings.principal, keytab: settings.serviceKeytab, extraArgs: ['-d'] });
  daemons.push(daemon);
  return { ...daemon, where: { port: daemon.port, principal: settings.principal } };
}

afterAll(async () => {
  await Promise.all(daemons.map((daemon) => daemon.stop()));
  daemons = [];
});

async function log(daemon: ExtraRemctld): Promise<string> {
  return readFile(daemon.logFile, 'utf8');
}

async function accepted(daemon: ExtraRemctld): Promise<number> {
  return ((await log(daemon)).match(/accepted connection from /g) ?? []).length;
}

async function commands(daemon: ExtraRemctld): Promise<string[]> {
  return [...(await log(daemon)).matchAll(/COMMAND from [^:]+: (.*)/g)].map((match) => match[1]!);
}

describe('reuse', () => {
  test('100 sequential calls run on one connection: remctld accepts it once and runs all 100', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool();
    try {
      for (let i = 0; i < 100; i++) {
        const { stdout } = await pool.run(host, ['test', 'echo', `call ${i}`], { ...daemon.where, encoding: 'utf8' });
        expect(stdout).toBe(`call ${i}\n`);
      }
      expect(pool.stats).toEqual({ connections: 1, idle: 1, busy: 0, queued: 0, opened: 1, reused: 99 });
    } finally {
      await pool.close();
    }
    expect(await accepted(daemon)).toBe(1);
    expect(await commands(daemon)).toHaveLength(100);
  });

  test('remctl() with a pool is pool.run(), and pool.spawn() streams on a pooled connection and gives it back', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool();
    try {
      expect((await remctl(host, ['test', 'test'], { ...daemon.where, pool, encoding: 'utf8' })).stdout).toBe('hello world\n');
      const child = pool.spawn(host, ['test', 'big', '100000'], daemon.where);
      const chunks: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
      child.stderr.resume();
      expect(await child.status).toBe(0);
      expect(Buffer.concat(chunks).length).toBe(100000);
      expect((await remctl(host, ['test', 'test'], { ...daemon.where, pool, encoding: 'utf8' })).stdout).toBe('hello world\n');
      await vi.waitFor(() => expect(pool.stats).toMatchObject({ connections: 1, idle: 1, opened: 1, reused: 2 }));
    } finally {
      await pool.close();
    }
    expect(await accepted(daemon)).toBe(1);
  });

  test('a protocol error leaves the connection in the pool; the next call reuses it', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool();
    try {
      const { error } = await rejection(pool.run(host, ['test', 'bogus'], daemon.where));
      expect(error).toBeInstanceOf(RemctlProtocolError);
      await pool.run(host, ['test', 'test'], daemon.where);
      expect(pool.stats).toMatchObject({ opened: 1, reused: 1 });
    } finally {
      await pool.close();
    }
    expect(await accepted(daemon)).toBe(1);
  });
});

describe('the per-target bound and its queue', () => {
  test('at most `connections` are open for a target; the calls beyond wait and run in the order they were made', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool({ connections: 2 });
    try {
      const calls = Array.from({ length: 6 }, (_, i) => pool.run(host, ['test', 'lines', '0.3'], daemon.where).then(() => i));
      await vi.waitFor(() => expect(pool.stats).toMatchObject({ busy: 2, queued: 4 }));
      expect(pool.stats.connections).toBe(2);
      expect(await Promise.all(calls)).toEqual([0, 1, 2, 3, 4, 5]);
      expect(pool.stats).toMatchObject({ connections: 2, idle: 2, queued: 0, opened: 2, reused: 4 });
    } finally {
      await pool.close();
    }
    expect(await accepted(daemon)).toBe(2);

    const one = await remctld();
    const single = new RemctlPool({ connections: 1 });
    try {
      const first = single.run(host, ['test', 'sleep', '0.3'], one.where);
      const queued = ['b', 'c', 'd'].map((name) => single.run(host, ['test', 'echo', name], one.where));
      await Promise.all([first, ...queued]);
    } finally {
      await single.close();
    }
    expect(await commands(one)).toEqual(['test sleep 0.3', 'test echo b', 'test echo c', 'test echo d']);
  });

  test('an aborted signal takes a waiting call out of the queue at once, and its command never reaches the server', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool({ connections: 1 });
    const marker = `never-sent-${process.pid}-${Date.now()}`;
    try {
      const first = pool.run(host, ['test', 'sleep', '1'], daemon.where);
      const controller = new AbortController();
      const waiting = pool.run(host, ['test', 'echo', marker], { ...daemon.where, signal: controller.signal });
      const after = pool.run(host, ['test', 'echo', 'after'], { ...daemon.where, encoding: 'utf8' });
      await vi.waitFor(() => expect(pool.stats.queued).toBe(2));
      const started = Date.now();
      controller.abort();
      const { error, ms } = await rejection(waiting, started);
      expect(error).toBe(controller.signal.reason);
      expect(ms).toBeLessThan(500);
      expect(pool.stats.queued).toBe(1);
      await first;
      expect((await after).stdout).toBe('after\n');
    } finally {
      await pool.close();
    }
    expect(await commands(daemon)).toEqual(['test sleep 1', 'test echo after']);
  });

  test('a call aborted in the turn that made it never reaches the server, though an idle connection was there for it', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool();
    const marker = `same-turn-${process.pid}-${Date.now()}-`;
    try {
      await pool.run(host, ['test', 'test'], daemon.where);
      const outcomes: unknown[] = [];
      for (let i = 0; i < 40; i++) {
        const controller = new AbortController();
        const call = rejection(pool.run(host, ['test', 'echo', `${marker}${i}`], { ...daemon.where, signal: controller.signal }));
        // Right away, or after a few continuations of the code that made it: all in one turn.
        for (let hops = 0; hops < i % 8; hops++) await Promise.resolve();
        controller.abort();
        outcomes.push((await call).error === controller.signal.reason);
      }
      expect(outcomes.every(Boolean)).toBe(true);
      // A call without a signal goes at once, on the same connection.
      expect((await pool.run(host, ['test', 'echo', 'after'], { ...daemon.where, encoding: 'utf8' })).stdout).toBe('after\n');
    } finally {
      await pool.close();
    }
    await sleep(200);
    expect(await commands(daemon)).toEqual(['test test', 'test echo after']);
  });

  test('a timeout counts the wait in the queue', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool({ connections: 1 });
    try {
      const first = pool.run(host, ['test', 'sleep', '1'], daemon.where);
      const { error } = await rejection(pool.run(host, ['test', 'test'], { ...daemon.where, timeout: 300 }));
      expect(error).toMatchObject({ code: 'ERR_REMCTL_TIMEOUT', message: "timed out after 300 ms: the call's timeout" });
      await first;
    } finally {
      await pool.close();
    }
    expect(await commands(daemon)).toEqual(['test sleep 1']);
  });

  test('an open that fails for the target, not the call, fails the calls waiting behind it at once, without an open each', async () => {
    const silent = await silentServer();
    const pool = new RemctlPool({ connections: 1, connectTimeout: 300 });
    try {
      const calls = Array.from({ length: 4 }, () => rejection(pool.run(host, ['test', 'test'], { port: silent.port, principal: settings.principal })));
      for (const { error } of await Promise.all(calls)) expect(error).toMatchObject({ code: 'ERR_REMCTL_TIMEOUT' });
      expect(pool.stats).toMatchObject({ connections: 0, queued: 0 });
    } finally {
      await pool.close();
      await silent.close();
    }
    // One open tried, for the first call; the other three did not wait out one each.
    expect(silent.accepted).toBe(1);

    // A call's own abort while it opens is its own: the call behind it opens and runs.
    const daemon = await remctld();
    const slow = await delayingProxy(daemon.port, 300);
    const delayed = new RemctlPool({ connections: 1 });
    try {
      const controller = new AbortController();
      const first = rejection(delayed.run(host, ['test', 'test'], { port: slow.port, principal: settings.principal, signal: controller.signal }));
      const second = delayed.run(host, ['test', 'echo', 'second'], { port: slow.port, principal: settings.principal, encoding: 'utf8' });
      await sleep(50);
      controller.abort();
      expect((await first).error).toBe(controller.signal.reason);
      expect((await second).stdout).toBe('second\n');
    } finally {
      await delayed.close();
      await slow.close();
    }
  });

  test('256 concurrent calls on the stock remctld (listen backlog 5) all succeed with openRetries: 0', async () => {
    const pool = new RemctlPool({ connections: 4, openRetries: 0 });
    try {
      const results = await Promise.all(
        Array.from({ length: 256 }, (_, i) => pool.run(host, ['test', 'echo', `${i}`], { port: settings.port, principal: settings.principal, encoding: 'utf8' })),
      );
      expect(results.map((result) => result.stdout)).toEqual(Array.from({ length: 256 }, (_, i) => `${i}\n`));
      expect(pool.stats).toMatchObject({ connections: 4, opened: 4, reused: 252 });
    } finally {
      await pool.close();
    }
  });
});

describe('connections come and go', () => {
  test('an idle connection is closed after keepAliveTimeout, and the next call opens a new one', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool({ keepAliveTimeout: 300 });
    try {
      await pool.run(host, ['test', 'test'], daemon.where);
      expect(pool.stats).toMatchObject({ connections: 1, idle: 1 });
      await vi.waitFor(() => expect(pool.stats.connections).toBe(0), { timeout: 3000 });
      await vi.waitFor(async () => expect(await log(daemon)).toMatch(/quit received, closing connection/), { timeout: 3000 });
      await pool.run(host, ['test', 'test'], daemon.where);
      expect(pool.stats).toMatchObject({ connections: 1, opened: 2, reused: 0 });
    } finally {
      await pool.close();
    }
    expect(await accepted(daemon)).toBe(2);
  });

  test('keepAliveTimeout counts from when the connection last went idle: one used every 800 ms outlives a 2 s keepAliveTimeout', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool({ keepAliveTimeout: 2000 });
    try {
      for (let i = 0; i < 4; i++) {
        if (i > 0) await sleep(800);
        await pool.run(host, ['test', 'test'], daemon.where);
      }
      expect(pool.stats).toMatchObject({ connections: 1, opened: 1, reused: 3 });
    } finally {
      await pool.close();
    }
    expect(await accepted(daemon)).toBe(1);
  });

  test('with noopInterval, an idle connection sends noops until keepAliveTimeout closes it', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool({ noopInterval: 100, keepAliveTimeout: 1000 });
    try {
      await pool.run(host, ['test', 'test'], daemon.where);
      await vi.waitFor(async () => expect(((await log(daemon)).match(/replying to no-op message/g) ?? []).length).toBeGreaterThanOrEqual(3), {
        timeout: 3000,
      });
      // Still the same connection, reused by the next call.
      await pool.run(host, ['test', 'test'], daemon.where);
      expect(pool.stats).toMatchObject({ opened: 1, reused: 1 });
    } finally {
      await pool.close();
    }
    expect(await accepted(daemon)).toBe(1);
  });

  test('a connection the server closed while idle is found out by the next call, which runs on a fresh one', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool();
    try {
      await pool.run(host, ['test', 'test'], daemon.where);
      await dropConnections(daemon);
      const { stdout } = await pool.run(host, ['test', 'echo', 'fresh'], { ...daemon.where, encoding: 'utf8' });
      expect(stdout).toBe('fresh\n');
    } finally {
      await pool.close();
    }
    expect(await accepted(daemon)).toBe(2);
    expect(await commands(daemon)).toEqual(['test test', 'test echo fresh']);
  });

  test('a command whose connection is lost after it was sent fails, and is never sent again', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool();
    try {
      const running = rejection(pool.run(host, ['test', 'sleep', '10'], daemon.where));
      await vi.waitFor(async () => expect(await commands(daemon)).toEqual(['test sleep 10']));
      await dropConnections(daemon);
      const { error } = await running;
      expect(error).toBeInstanceOf(RemctlError);
      expect(error).toMatchObject({ code: 'ERR_REMCTL_CONNECTION_LOST' });
      expect(pool.stats.connections).toBe(0);
      await pool.run(host, ['test', 'test'], daemon.where);
    } finally {
      await pool.close();
    }
    expect(await commands(daemon)).toEqual(['test sleep 10', 'test test']);
  });

  test('a connection whose credentials expired is retired, not used: the command never goes out, and a renewed ticket gets a fresh connection', async () => {
    const daemon = await remctld();
    const ccache = `FILE:${settings.dir}/pool-short-lived-${process.pid}.ccache`;
    await kinit(settings, settings.clientPrincipal, settings.clientKeytab, ccache, ['-l', '5s']);
    const pool = new RemctlPool();
    const marker = `after-expiry-${process.pid}-${Date.now()}`;
    try {
      await pool.run(host, ['test', 'test'], { ...daemon.where, ccache });
      await sleep(6000);
      const { error } = await rejection(pool.run(host, ['test', 'echo', marker], { ...daemon.where, ccache }));
      expect(error).toBeInstanceOf(RemctlError);
      expect(error).toMatchObject({ code: 'ERR_REMCTL_AUTH' });
      expect(pool.stats.connections).toBe(0);
      await kinit(settings, settings.clientPrincipal, settings.clientKeytab, ccache);
      expect((await pool.run(host, ['test', 'echo', 'renewed'], { ...daemon.where, ccache, encoding: 'utf8' })).stdout).toBe('renewed\n');
    } finally {
      await pool.close();
    }
    expect(await commands(daemon)).toEqual(['test test', 'test echo renewed']);
  }, 20_000);

  test('calls with different ticket caches never share a connection', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool();
    try {
      const mine = await pool.run(host, ['test', 'whoami'], { ...daemon.where, ccache: settings.ccache, encoding: 'utf8' });
      const theirs = await pool.run(host, ['test', 'whoami'], { ...daemon.where, ccache: settings.otherCcache, encoding: 'utf8' });
      const mineAgain = await pool.run(host, ['test', 'whoami'], { ...daemon.where, ccache: settings.ccache, encoding: 'utf8' });
      expect(mine.stdout).toBe(mineAgain.stdout);
      expect(theirs.stdout).not.toBe(mine.stdout);
      expect(pool.stats).toMatchObject({ connections: 2, opened: 2, reused: 1 });
    } finally {
      await pool.close();
    }
    expect(await accepted(daemon)).toBe(2);
  });
});

describe('close() and destroy()', () => {
  test('close() waits for the calls in flight, then closes every connection; later calls reject with ERR_REMCTL_POOL_CLOSED', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool({ connections: 1 });
    const running = pool.run(host, ['test', 'sleep', '0.5'], { ...daemon.where, encoding: 'utf8' });
    const queued = pool.run(host, ['test', 'echo', 'queued'], { ...daemon.where, encoding: 'utf8' });
    await vi.waitFor(() => expect(pool.stats.queued).toBe(1));
    await pool.close();
    expect((await running).stdout).toBe('slept 0.5\n');
    expect((await queued).stdout).toBe('queued\n');
    expect(pool.stats).toMatchObject({ connections: 0, idle: 0, busy: 0, queued: 0 });
    const { error } = await rejection(pool.run(host, ['test', 'test'], daemon.where));
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).toMatchObject({ code: 'ERR_REMCTL_POOL_CLOSED' });
    const child = pool.spawn(host, ['test', 'test'], daemon.where);
    child.stdout.resume();
    expect((await rejection(child.status)).error).toMatchObject({ code: 'ERR_REMCTL_POOL_CLOSED' });
    await vi.waitFor(async () => expect(await log(daemon)).toMatch(/quit received, closing connection/));
  });

  test('destroy() rejects the calls in flight and queued with ERR_REMCTL_POOL_CLOSED at once, and closes their connections', async () => {
    const daemon = await remctld();
    const pool = new RemctlPool({ connections: 1 });
    const running = rejection(pool.run(host, ['test', 'sleep', '5'], daemon.where));
    const queued = rejection(pool.run(host, ['test', 'echo', 'queued'], daemon.where));
    await vi.waitFor(async () => expect(await commands(daemon)).toEqual(['test sleep 5']));
    const started = Date.now();
    await pool.destroy();
    for (const { error } of [await running, await queued]) expect(error).toMatchObject({ code: 'ERR_REMCTL_POOL_CLOSED' });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(pool.stats).toMatchObject({ connections: 0, queued: 0 });
    expect(await commands(daemon)).toEqual(['test sleep 5']);
  });

  test('a process with an idle pool exits by itself', async () => {
    const daemon = await remctld();
    const started = Date.now();
    const result = await runNode([IDLE_POOL, String(daemon.port)], settings, 20_000);
    expect({ code: result.code, signal: result.signal, stderr: result.stderr }).toStrictEqual({ code: 0, signal: null, stderr: '' });
    expect(JSON.parse(result.stdout)).toMatchObject({ stdout: 'hello world\n', stats: { connections: 1, idle: 1 } });
    // Well before its keep-alive of a minute.
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});

describe('targets', () => {
  test('a pool keeps nothing of a target once it has no connection and no call: 20 000 calls to distinct targets grow the heap by less than 2 MiB', async () => {
    const gc = exposeGc();
    const pool = new RemctlPool();
    try {
      // Refused for an option after the target's key was made, or refused by the port: neither
      // leaves the target behind.
      const warm = async (from: number, count: number) => {
        for (let i = from; i < from + count; i += 100) {
          await Promise.all(
            Array.from({ length: 100 }, (_, j) => [
              pool.run(`host-${i + j}.invalid`, ['test', 'test'], { encoding: 'no-such-encoding' as never }).catch(() => {}),
              pool.run(host, ['test', 'test'], { port: 1, principal: `service/${i + j}@${settings.realm}` }).catch(() => {}),
            ]).flat(),
          );
        }
      };
      // Long enough for the compiler to be done with these paths: what it keeps is some 300 KiB.
      await warm(0, 3000);
      gc();
      const before = process.memoryUsage().heapUsed;
      await warm(3000, 10_000);
      gc();
      const grown = process.memoryUsage().heapUsed - before;
      // A target kept per call is some 300 bytes: over 6 MiB for these 20 000.
      expect(grown).toBeLessThan(2 << 20);
      expect(pool.stats).toEqual({ connections: 0, idle: 0, busy: 0, queued: 0, opened: 0, reused: 0 });
    } finally {
      await pool.close();
    }
  });
});

describe('bad options', () => {
  test('are refused with the name of the option and what was wrong', () => {
    expect(() => new RemctlPool({ connections: 0 })).toThrow(new RangeError('connections must be a whole number from 1 to 10000, got 0'));
    expect(() => new RemctlPool({ keepAliveTimeout: -1 })).toThrow(
      new RangeError('keepAliveTimeout must be a whole number of milliseconds from 0 to 2147483647, got -1'),
    );
    expect(() => new RemctlPool({ conections: 4 } as never)).toThrow(new TypeError('unknown option "conections" in options; did you mean "connections"?'));
    const pool = new RemctlPool();
    return Promise.all([
      expect(pool.run(host, ['test', 'test'], { idleTimeout: 5 } as never)).rejects.toThrow(/^unknown option "idleTimeout" in options/),
      expect(remctl(host, ['test', 'test'], { pool: {} as never })).rejects.toThrow(new TypeError('options.pool must be a RemctlPool')),
    ]);
  });
});
