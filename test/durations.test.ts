// The three durations, each in milliseconds and named for what it bounds: `timeout`, a call's
// whole deadline; `idleTimeout`, how long the server may stay silent; `connectTimeout`,
// connecting and authenticating. Each against the realm's remctld or a listener that never
// answers.

import { readFile } from 'node:fs/promises';
import { describe, expect, test, vi } from 'vitest';
import { Remctl, RemctlError, remctl, remctlSync, spawn } from '../dist/index.js';
import { rejection, silentServer } from './probes.js';
import { realm } from './realm-context.mjs';

const settings = realm();
const { host } = settings;
const server = { port: settings.port, principal: settings.principal };

function thrown(call: () => unknown): { error: unknown; ms: number } {
  const started = Date.now();
  try {
    call();
  } catch (error) {
    return { error, ms: Date.now() - started };
  }
  throw new Error('expected the call to throw, but it returned');
}

async function statusFailure(child: ReturnType<typeof spawn>): Promise<unknown> {
  child.stdout.resume();
  child.stderr.resume();
  return (await rejection(child.status)).error;
}

const callTimedOut = (ms: number) => ({ code: 'ERR_REMCTL_TIMEOUT', message: `timed out after ${ms} ms: the call's timeout` });

describe('timeout: the whole call, in milliseconds', () => {
  test('fires during the output of test sleep: remctl(), spawn() and remctlSync() reject with ERR_REMCTL_TIMEOUT, never early', async () => {
    const options = { ...server, timeout: 700 };
    for (const { error, ms } of [
      await rejection(remctl(host, ['test', 'sleep', '5'], options)),
      await (async () => {
        const started = Date.now();
        return { error: await statusFailure(spawn(host, ['test', 'sleep', '5'], options)), ms: Date.now() - started };
      })(),
      thrown(() => remctlSync(host, ['test', 'sleep', '5'], options)),
    ]) {
      expect(error).toBeInstanceOf(RemctlError);
      expect(error).toMatchObject(callTimedOut(700));
      expect(ms).toBeGreaterThanOrEqual(650);
    }
  });

  test('counts output that keeps coming, which idleTimeout does not: the call ends between two lines a second apart', async () => {
    const options = { ...server, idleTimeout: 3000, timeout: 600 };
    expect((await rejection(remctl(host, ['test', 'lines', '1'], options))).error).toMatchObject(callTimedOut(600));
    expect(thrown(() => remctlSync(host, ['test', 'lines', '1'], options)).error).toMatchObject(callTimedOut(600));
    // Without the deadline the same command completes.
    expect((await remctl(host, ['test', 'lines', '1'], { ...server, idleTimeout: 3000, encoding: 'utf8' })).stdout).toBe('first\nsecond\n');
  });

  test('on a Remctl: run() and spawn() time out and close the connection, and the next call reopens and works', async () => {
    const r = await Remctl.connect(host, server);
    try {
      expect((await rejection(r.run(['test', 'sleep', '5'], { timeout: 500 }))).error).toMatchObject(callTimedOut(500));
      expect(await r.run(['test', 'echo', 'after run'], { encoding: 'utf8' })).toMatchObject({ stdout: 'after run\n', status: 0 });
      expect(await statusFailure(r.spawn(['test', 'sleep', '5'], { timeout: 500 }))).toMatchObject(callTimedOut(500));
      expect(await r.run(['test', 'echo', 'after spawn'], { encoding: 'utf8' })).toMatchObject({ stdout: 'after spawn\n', status: 0 });
      expect(r.opened).toBe(true);
    } finally {
      await r.close();
    }
  });

  test('counts the wait for its turn: a call queued behind a long one times out there, and its command never reaches the server', async () => {
    const marker = `queued-past-deadline-${process.pid}-${Date.now()}`;
    const r = await Remctl.connect(host, server);
    try {
      const long = r.run(['test', 'sleep', '1.5'], { encoding: 'utf8' });
      const queued = await rejection(r.run(['test', 'echo', marker], { timeout: 300 }));
      expect(queued.error).toMatchObject(callTimedOut(300));
      expect(queued.ms).toBeLessThan(1500);
      // The call ahead of it is not disturbed.
      expect((await long).stdout).toBe('slept 1.5\n');
      expect((await r.run(['test', 'echo', 'next'], { encoding: 'utf8' })).stdout).toBe('next\n');
    } finally {
      await r.close();
    }
    expect(await readFile(settings.remctldLog, 'utf8')).not.toContain(marker);
  });
});

describe('idleTimeout: network inactivity, in milliseconds', () => {
  test('a server silent for longer than 400 ms fails the call, with libremctl\'s words, though it would answer within a second', async () => {
    const options = { ...server, idleTimeout: 400 };
    const timedOut = { code: 'ERR_REMCTL_TIMEOUT', message: 'error receiving token: timed out' };
    for (const { error, ms } of [
      await rejection(remctl(host, ['test', 'sleep', '1'], options)),
      thrown(() => remctlSync(host, ['test', 'sleep', '1'], options)),
    ]) {
      expect(error).toMatchObject(timedOut);
      expect(ms).toBeGreaterThanOrEqual(350);
    }
    const r = await Remctl.connect(host, options);
    try {
      expect((await rejection(r.run(['test', 'sleep', '1']))).error).toMatchObject(timedOut);
    } finally {
      await r.close();
    }
  });
});

describe('connectTimeout: connecting and authenticating, in milliseconds', () => {
  test('a listener that never answers: every entry point rejects with ERR_REMCTL_TIMEOUT after connectTimeout, and lets go of the connection', async () => {
    const listener = await silentServer();
    const options = { port: listener.port, principal: settings.principal, connectTimeout: 500 };
    const timedOut = {
      code: 'ERR_REMCTL_TIMEOUT',
      message: 'timed out after 500 ms connecting and authenticating: no answer from the server or from the KDC',
    };
    try {
      for (const { error, ms } of [
        await rejection(remctl(host, ['test', 'test'], options)),
        await rejection(Remctl.connect(host, options)),
        await (async () => {
          const started = Date.now();
          return { error: await statusFailure(spawn(host, ['test', 'test'], options)), ms: Date.now() - started };
        })(),
        thrown(() => remctlSync(host, ['test', 'test'], options)),
      ]) {
        expect(error).toBeInstanceOf(RemctlError);
        expect(error).toMatchObject(timedOut);
        expect(ms).toBeGreaterThanOrEqual(450);
      }
      // remctlSync's connection is accepted once the event loop runs again.
      await vi.waitFor(() => expect(listener.accepted).toBe(4), { timeout: 3000 });
      await vi.waitFor(() => expect(listener.open).toBe(0), { timeout: 3000 });
    } finally {
      await listener.close();
    }
  });

  test('bounds only the open: a command that runs longer than connectTimeout completes', async () => {
    const options = { ...server, connectTimeout: 300 };
    expect((await remctl(host, ['test', 'sleep', '0.8'], { ...options, encoding: 'utf8' })).stdout).toBe('slept 0.8\n');
    expect(remctlSync(host, ['test', 'sleep', '0.8'], { ...options, encoding: 'utf8' }).stdout).toBe('slept 0.8\n');
    const r = await Remctl.connect(host, options);
    try {
      expect((await r.run(['test', 'sleep', '0.8'], { encoding: 'utf8' })).stdout).toBe('slept 0.8\n');
    } finally {
      await r.close();
    }
  });
});
