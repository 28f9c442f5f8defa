// Faults, each against real processes: a KDC that is gone, a remctld killed mid-stream or
// restarted between commands, servers that say nothing or talk nonsense, bad credentials, a
// process with more than 1024 descriptors, two identities at once, a server that is not who we
// asked for, and a process or worker_thread that ends with calls in flight.
//
// This file stops and restarts daemons, so it runs a realm of its own (FAULTS.REMCTL): the test
// files running alongside never see the shared realm's daemons go away.

import { spawn as spawnProcess } from 'node:child_process';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { counts, countsSettle, settledCounts } from './metrics.mjs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { ERROR_ACCESS, Remctl, RemctlError, RemctlNotOpenedError, RemctlProtocolError, _remctl, remctl, remctlSync, spawn } from '../dist/index.js';
import {
  TOKEN_CONTEXT_V2,
  TOKEN_DATA_V2,
  garbageServer,
  silentServer,
  tamperingProxy,
  tokenHeader,
  type TestServer,
} from './fault-servers.js';
import { runCRemctl } from './realm-context.mjs';
import {
  kinit,
  processIsAlive,
  readPid,
  runTool,
  startExtraRemctld,
  startKdc,
  startRemctld,
  stopKdc,
  stopRemctld,
  type ExtraRemctld,
  type RealmSettings,
} from './realm-control.mjs';
import { bigPattern, startRealm } from './realm.mjs';

type Realm = Awaited<ReturnType<typeof startRealm>>;

const EXIT_IN_FLIGHT = fileURLToPath(new URL('./fixtures/exit-in-flight.mjs', import.meta.url));
const WORKER_IN_FLIGHT = fileURLToPath(new URL('./fixtures/worker-in-flight.mjs', import.meta.url));

let own: Realm;
let settings: RealmSettings;
let where: { port: number; principal: string };
const savedEnv: Record<string, string | undefined> = {};

beforeAll(async () => {
  own = await startRealm({ realm: 'FAULTS.REMCTL' });
  settings = own.settings;
  where = { port: settings.port, principal: settings.principal };
  // libkrb5 reads these from the environment on each use: from here on this process is a
  // client of FAULTS.REMCTL only.
  for (const [name, value] of Object.entries(settings.env)) {
    savedEnv[name] = process.env[name];
    process.env[name] = value;
  }
});

afterAll(async () => {
  for (const [name, value] of Object.entries(savedEnv)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  await own?.stop();
});

/** What a promise rejects with, and how many milliseconds after `from` it did. */
async function rejection(promise: Promise<unknown>, from = performance.now()): Promise<{ error: Error; ms: number }> {
  try {
    await promise;
  } catch (error) {
    return { error: error as Error, ms: performance.now() - from };
  }
  throw new Error('expected the promise to reject, but it resolved');
}


/** A ccache in the realm's directory holding a fresh TGT for client@ and nothing else. */
async function freshCcache(name: string, extraArgs: string[] = []): Promise<string> {
  const ccache = `FILE:${settings.dir}/${name}.ccache`;
  await kinit(settings, settings.clientPrincipal, settings.clientKeytab, ccache, extraArgs);
  return ccache;
}

/** Runs a node script with the realm in its environment; resolves with what it did. */
function runNode(script: string, onLine?: (line: string, at: number) => void) {
  return new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string; exitedAt: number }>(
    (resolve, reject) => {
      const child = spawnProcess(process.execPath, [script], {
        env: { ...process.env, ...settings.env, REMCTL_TEST_REALM: JSON.stringify(settings) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        const at = performance.now();
        stdout += chunk;
        for (const line of chunk.split('\n').filter(Boolean)) onLine?.(line, at);
      });
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      let exitedAt = 0;
      child.once('error', reject);
      // Timed at 'exit', resolved at 'close', once all the output is in.
      child.once('exit', () => (exitedAt = performance.now()));
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr, exitedAt });
      });
    },
  );
}

describe('the KDC is down', () => {
  test('with the KDC stopped and only a TGT in the ticket cache, open fails with a GSS-API error naming the realm, well within the timeout', async () => {
    const ccache = await freshCcache('tgt-only');
    const { stdout: listing } = await runTool(settings, 'klist', ['-c', ccache]);
    expect(listing).toContain(`krbtgt/${settings.realm}@${settings.realm}`);
    expect(listing).not.toContain('host/');

    await stopKdc(settings);
    try {
      const started = performance.now();
      const { error, ms } = await rejection(Remctl.connect(settings.host, { ...where, ccache, idleTimeout: 3000 }), started);
      expect(error).toBeInstanceOf(RemctlError);
      expect(error).not.toBeInstanceOf(RemctlProtocolError);
      expect(error.message).toMatch(/^GSS-API error initializing context: .*Cannot contact any KDC for realm 'FAULTS\.REMCTL'/);
      expect(ms).toBeLessThan(3000);

      // The one-shot call and the C API say the same.
      const oneShot = await rejection(remctl(settings.host, ['test', 'test'], { ...where, ccache, idleTimeout: 3000 }));
      expect(oneShot.error.message).toBe(error.message);
      const r = _remctl.remctl_new();
      _remctl.remctl_set_ccache(r, ccache);
      expect(await _remctl.remctl_open(r, settings.host, settings.port, settings.principal)).toBe(false);
      expect(_remctl.remctl_error(r)).toBe(error.message);
      await _remctl.remctl_close(r);
    } finally {
      await startKdc(settings);
    }
    // With the KDC back, the same ticket cache gets its service ticket and works.
    const { stdout } = await remctl(settings.host, ['test', 'whoami'], { ...where, ccache, encoding: 'utf8' });
    expect(stdout).toBe(`${settings.clientPrincipal}\n`);
  });

  test('with a KDC that accepts and never answers, aborting the open rejects at once and its thread ends once libkrb5 gives up', async () => {
    const ccache = await freshCcache('tgt-only-blackhole');
    await remctl(settings.host, ['test', 'test'], where);
    const before = await settledCounts();
    await stopKdc(settings);
    let blackHole: TestServer | undefined;
    try {
      blackHole = await silentServer(settings.kdcPort);
      const controller = new AbortController();
      const opening = Remctl.connect(settings.host, { ...where, ccache, signal: controller.signal });
      await vi.waitFor(() => expect(blackHole!.accepted).toBeGreaterThan(0), { timeout: 5000 });
      const abortedAt = performance.now();
      controller.abort();
      const { error, ms } = await rejection(opening, abortedAt);
      expect(error).toBe(controller.signal.reason);
      expect(ms).toBeLessThan(200);
    } finally {
      await blackHole?.close();
      await startKdc(settings);
    }
    // Hanging up on libkrb5 ends its wait; the thread then finishes and goes.
    expect(await countsSettle(before, 15_000)).toStrictEqual(before);
  });

  test('with a KDC that accepts and never answers, open with a connectTimeout of 2000 fails within about 2 seconds, saying the KDC did not answer', async () => {
    const ccache = await freshCcache('tgt-only-hung-kdc');
    await stopKdc(settings);
    let blackHole: TestServer | undefined;
    let opening: Promise<unknown> | undefined;
    try {
      blackHole = await silentServer(settings.kdcPort);
      const started = performance.now();
      opening = Remctl.connect(settings.host, { ...where, ccache, connectTimeout: 2000 });
      opening.catch(() => {});
      const outcome = await Promise.race([
        rejection(opening, started),
        sleep(6000).then(() => ({ error: undefined, ms: performance.now() - started })),
      ]);
      expect(outcome.error, `still pending after ${Math.round(outcome.ms)} ms`).toBeInstanceOf(RemctlError);
      expect(outcome.ms).toBeLessThan(3000);
      expect(outcome.error!.message).toMatch(/KDC/);
    } finally {
      // Hanging up on libkrb5 ends its wait, so the open settles and its thread goes.
      await blackHole?.close();
      await opening?.catch(() => {});
      await startKdc(settings);
    }
  });
});

/**
 * Kills remctld's whole process group at once, connection handlers and their commands
 * included, as a crash or the OOM killer would: nothing gets to say goodbye. (stopRemctld's
 * SIGTERM lets a connection handler report its command's death as exit status 255 first.)
 */
async function killRemctld(realm: RealmSettings): Promise<void> {
  const pid = readPid(realm.remctldPidFile);
  if (pid === undefined) throw new Error('remctld is not running');
  process.kill(-pid, 'SIGKILL');
  await vi.waitFor(() => expect(processIsAlive(pid)).toBe(false), { timeout: 5000 });
  await stopRemctld(realm);
}

describe('an open that gives up releases everything', () => {
  test('an open that times out on a server that never answers lets go of its thread and descriptors at once, and error() says why', async () => {
    // The listener's own sockets are descriptors of this process too: counted from here.
    const listener = await silentServer();
    const before = await settledCounts();
    try {
      for (const how of ['open', 'connect', 'spawn'] as const) {
        const started = performance.now();
        let error: Error;
        const r = new Remctl({ idleTimeout: 1000 });
        if (how === 'open') error = (await rejection(r.open(settings.host, { port: listener.port, principal: settings.principal }))).error;
        else if (how === 'connect') error = (await rejection(Remctl.connect(settings.host, { port: listener.port, principal: settings.principal, idleTimeout: 1000 }))).error;
        else {
          const child = spawn(settings.host, ['test', 'test'], { port: listener.port, principal: settings.principal, idleTimeout: 1000 });
          child.stdout.resume();
          error = (await rejection(child.status)).error;
        }
        expect(error).toBeInstanceOf(RemctlError);
        expect(error.message).toBe('error receiving token: timed out');
        if (how === 'open') {
          expect(r.opened).toBe(false);
          expect(r.error()).toBe(error.message);
        }
        expect(performance.now() - started).toBeLessThan(4000);
        // The wait was on our own socket: nothing is left behind once the call has failed.
        await vi.waitFor(() => expect(listener.open).toBe(0), { timeout: 2000 });
        expect(await countsSettle(before, 2000), how).toStrictEqual(before);
      }
    } finally {
      await listener.close();
    }
  });

  test('an open that gives up on a KDC that never answers rejects at its deadline, error() says why, nothing queued behind it runs, and its thread and descriptors go once libkrb5 lets go', async () => {
    const ccache = await freshCcache('tgt-only-deadline');
    await remctl(settings.host, ['test', 'test'], where);
    const before = await settledCounts();
    await stopKdc(settings);
    let blackHole: TestServer | undefined;
    const marker = `after-deadline-${process.pid}-${Date.now()}`;
    try {
      blackHole = await silentServer(settings.kdcPort);
      const r = new Remctl({ ccache, connectTimeout: 1000 });
      const started = performance.now();
      const opening = r.open(settings.host, where);
      const queued = r.run(['test', 'echo', marker]);
      const { error, ms } = await rejection(opening, started);
      expect(error).toBeInstanceOf(RemctlError);
      expect(error).toMatchObject({ code: 'ERR_REMCTL_TIMEOUT' });
      expect(error.message).toBe('timed out after 1000 ms connecting and authenticating: no answer from the server or from the KDC');
      expect(ms).toBeLessThan(3000);
      expect(r.opened).toBe(false);
      expect(r.error()).toBe(error.message);
      await expect(queued).rejects.toThrow(RemctlNotOpenedError);
      const spawned = spawn(settings.host, ['test', 'echo', marker], { ...where, ccache, connectTimeout: 1000 });
      spawned.stdout.resume();
      expect((await rejection(spawned.status)).error).toMatchObject({ code: 'ERR_REMCTL_TIMEOUT', message: error.message });
      // remctl() opens and runs in one native call, and remctlSync() on the calling thread: the
      // same deadline holds for both.
      const once = await rejection(remctl(settings.host, ['test', 'echo', marker], { ...where, ccache, connectTimeout: 1000 }), performance.now());
      expect(once.error).toMatchObject({ code: 'ERR_REMCTL_TIMEOUT', message: error.message });
      expect(once.ms).toBeLessThan(3000);
      const syncStarted = performance.now();
      let syncError: unknown;
      try {
        remctlSync(settings.host, ['test', 'echo', marker], { ...where, ccache, connectTimeout: 1000 });
      } catch (thrown) {
        syncError = thrown;
      }
      expect(performance.now() - syncStarted).toBeLessThan(3000);
      expect(syncError).toMatchObject({ code: 'ERR_REMCTL_TIMEOUT', message: error.message });
    } finally {
      // libkrb5 gives up once the KDC hangs up; then the threads end.
      await blackHole?.close();
      await startKdc(settings);
    }
    expect(await countsSettle(before, 15_000)).toStrictEqual(before);
    await sleep(300);
    expect(readFileSync(settings.remctldLog, 'utf8')).not.toContain(marker);
  });
});

describe('remctld goes away', () => {
  test('remctld killed while test big streams: the call rejects with a RemctlError, other connections carry on, and after a restart a new call works', async () => {
    const other: ExtraRemctld = await startExtraRemctld(settings, {
      principal: settings.otherServicePrincipal,
      keytab: settings.otherServiceKeytab,
    });
    const bystander = await Remctl.connect(settings.host, { port: other.port, principal: other.principal });
    const streaming = await Remctl.connect(settings.host, where);
    try {
      const size = 512 * 1024 * 1024;
      const child = streaming.spawn(['test', 'big', String(size)]);
      child.stderr.resume();
      const chunks: Buffer[] = [];
      let received = 0;
      // Read the first megabyte, then stop reading so that the server is still mid-stream.
      await new Promise<void>((resolve) => {
        let paused = false;
        child.stdout.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          received += chunk.length;
          if (received >= 1024 * 1024 && !paused) {
            paused = true;
            child.stdout.pause();
            resolve();
          }
        });
      });
      await killRemctld(settings);
      child.stdout.resume();
      const { error } = await rejection(child.status);
      expect(error).toBeInstanceOf(RemctlError);
      expect(error).not.toBeInstanceOf(RemctlProtocolError);
      expect(error.message).toMatch(/^error receiving token: /);
      // What did arrive is a true prefix of the output.
      expect(received).toBeLessThan(size);
      const data = Buffer.concat(chunks);
      expect(data.equals(bigPattern(data.length))).toBe(true);
      console.info(`remctld killed after ${received} of ${size} bytes: ${error.message}`);

      // The process serves its other connections as before.
      const { stdout } = await bystander.run(['test', 'whoami'], { encoding: 'utf8' });
      expect(stdout).toBe(`${settings.clientPrincipal}\n`);
      await expect(remctl(settings.host, ['test', 'test'], where)).rejects.toThrow(/^cannot connect to localhost/);
    } finally {
      await startRemctld(settings);
    }
    const after = await remctl(settings.host, ['test', 'test'], { ...where, encoding: 'utf8' });
    expect(after.stdout).toBe('hello world\n');
    // The connection whose command failed reopens for the next one.
    expect((await streaming.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
    await streaming.close();
    await bystander.close();
    await other.stop();
  });

  test('remctld stopped with SIGTERM while test big streams: the call settles at once, with the status 255 the server reports or a RemctlError', async () => {
    const streaming = await Remctl.connect(settings.host, where);
    try {
      const child = streaming.spawn(['test', 'big', String(512 * 1024 * 1024)]);
      child.stderr.resume();
      await new Promise((resolve) => child.stdout.once('data', resolve));
      child.stdout.resume();
      const stoppedAt = performance.now();
      await stopRemctld(settings);
      const outcome = await child.status.then(
        (status) => ({ status }),
        (error: Error) => ({ error }),
      );
      const ms = performance.now() - stoppedAt;
      if ('status' in outcome) expect(outcome.status).toBe(255);
      else expect(outcome.error).toBeInstanceOf(RemctlError);
      expect(ms).toBeLessThan(5000);
      console.info(`remctld stopped mid-stream: ${JSON.stringify('status' in outcome ? outcome : { error: outcome.error.message })}`);
    } finally {
      await startRemctld(settings);
      await streaming.close();
    }
  });

  test('remctld restarted between two commands: the next command reopens the connection and succeeds', async () => {
    const connection = await Remctl.connect(settings.host, where);
    const r = _remctl.remctl_new();
    expect(await _remctl.remctl_open(r, settings.host, settings.port, settings.principal)).toBe(true);
    try {
      expect((await connection.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
      await own.restartRemctld();
      expect(connection.opened).toBe(true);
      expect(await connection.run(['test', 'whoami'], { encoding: 'utf8' })).toEqual({
        stdout: `${settings.clientPrincipal}\n`,
        stderr: '',
        status: 0,
      });
      // The C API's handle does the same: nothing of the command had been sent.
      expect(await _remctl.remctl_commandv(r, ['test', 'test'])).toBe(true);
      expect(await _remctl.remctl_output(r)).toStrictEqual({ type: 'output', data: Buffer.from('hello world\n'), stream: 1 });
      // And a noop after a restart reopens too.
      await own.restartRemctld();
      await connection.noop();
      expect((await connection.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
    } finally {
      await connection.close();
      await _remctl.remctl_close(r);
    }
  });

  test('remctld killed during a command: that command fails with a RemctlError, and the next one reopens and succeeds', async () => {
    const connection = await Remctl.connect(settings.host, where);
    try {
      const running = connection.run(['test', 'sleep', '5']);
      await sleep(300);
      const stoppedAt = performance.now();
      const failed = rejection(running, stoppedAt);
      await killRemctld(settings);
      const { error, ms } = await failed;
      expect(error).toBeInstanceOf(RemctlError);
      expect(error).not.toBeInstanceOf(RemctlProtocolError);
      expect(error.message).toMatch(/^error receiving token: /);
      expect(ms).toBeLessThan(3000);
    } finally {
      await startRemctld(settings);
    }
    try {
      expect((await connection.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
      expect(connection.opened).toBe(true);
    } finally {
      await connection.close();
    }
  });

  test('a command made while remctld is down fails to reopen, and the command after it, once remctld is back, reopens and succeeds', async () => {
    const connection = await Remctl.connect(settings.host, where);
    try {
      await killRemctld(settings);
      try {
        // The server is gone: the reopen is refused, and said so in libremctl's words.
        await expect(connection.run(['test', 'test'])).rejects.toThrow(
          new RemctlError(`cannot connect to localhost (port ${settings.port}): Connection refused`, 'ERR_REMCTL_CONNECT'),
        );
      } finally {
        await startRemctld(settings);
      }
      // A failed reopen is no reason to give up on the connection for good.
      expect((await connection.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
      expect(connection.opened).toBe(true);
    } finally {
      await connection.close();
    }
  });
});

describe('servers that say nothing', () => {
  test('open with a timeout fails after about that long with "error receiving token: timed out"', async () => {
    const server = await silentServer();
    try {
      for (const open of [
        () => Remctl.connect(settings.host, { port: server.port, principal: settings.principal, idleTimeout: 1000 }),
        () => remctl(settings.host, ['test', 'test'], { port: server.port, principal: settings.principal, idleTimeout: 1000 }),
        () => spawn(settings.host, ['test', 'test'], { port: server.port, principal: settings.principal, idleTimeout: 1000 }).status,
      ]) {
        const { error, ms } = await rejection(open());
        expect(error).toBeInstanceOf(RemctlError);
        expect(error.message).toBe('error receiving token: timed out');
        expect(ms).toBeGreaterThanOrEqual(950);
        expect(ms).toBeLessThan(2500);
      }
      const r = _remctl.remctl_new();
      _remctl.remctl_set_timeout(r, 1);
      expect(await _remctl.remctl_open(r, settings.host, server.port, settings.principal)).toBe(false);
      expect(_remctl.remctl_error(r)).toBe('error receiving token: timed out');
      await _remctl.remctl_close(r);
      await vi.waitFor(() => expect(server.open).toBe(0), { timeout: 2000 });
    } finally {
      await server.close();
    }
  });

  test('without a timeout, aborting the open rejects at once with the reason and lets go of the socket and thread', async () => {
    await remctl(settings.host, ['test', 'test'], where);
    const before = await settledCounts();
    const server = await silentServer();
    try {
      const controller = new AbortController();
      const opening = Remctl.connect(settings.host, { port: server.port, principal: settings.principal, signal: controller.signal });
      const oneShot = remctl(settings.host, ['test', 'test'], { port: server.port, principal: settings.principal, signal: controller.signal });
      await vi.waitFor(() => expect(server.accepted).toBe(2));
      await sleep(300);
      const abortedAt = performance.now();
      controller.abort();
      for (const call of [opening, oneShot]) {
        const { error, ms } = await rejection(call, abortedAt);
        expect(error).toBe(controller.signal.reason);
        expect(ms).toBeLessThan(200);
      }
      await vi.waitFor(() => expect(server.open).toBe(0), { timeout: 2000 });
    } finally {
      await server.close();
    }
    expect(await countsSettle(before)).toStrictEqual(before);
  });
});

describe('servers that talk nonsense', () => {
  const garbage: Array<[string, Buffer, RegExp]> = [
    ['an HTTP response', Buffer.from('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'), /^error receiving token: token too larger$/],
    ['a context token of random bytes', Buffer.concat([tokenHeader(TOKEN_CONTEXT_V2, 64), Buffer.alloc(64, 0xa5)]), /^GSS-API error initializing context: /],
    ['an empty context token', tokenHeader(TOKEN_CONTEXT_V2, 0), /^(GSS-API error initializing context: |error receiving token: )/],
    ['a token with no flag the client knows', Buffer.concat([tokenHeader(0x80, 4), Buffer.from('oops')]), /^(GSS-API error initializing context: |error receiving token: |unexpected token from server)/],
  ];

  test.each(garbage)('a server that answers with %s: open fails with a clear error', async (_what, bytes, expected) => {
    for (const close of [false, true]) {
      const server = await garbageServer(bytes, { close });
      try {
        const { error, ms } = await rejection(
          Remctl.connect(settings.host, { port: server.port, principal: settings.principal, idleTimeout: 2000 }),
        );
        expect(error).toBeInstanceOf(RemctlError);
        expect(error.message).toMatch(expected);
        // Either it is refused at once, or the connection hangs and the timeout ends it.
        expect(ms).toBeLessThan(3000);
        console.info(`${_what}${close ? ', then a hang-up' : ''}: ${error.message}`);
      } finally {
        await server.close();
      }
    }
  });

  test('a token whose length prefix claims 4 GiB is refused as "token too larger" (sic) without allocating it, during the handshake and after it', async () => {
    globalThis.gc?.();
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const huge = tokenHeader(TOKEN_DATA_V2, 0xfffffff0);
    const handshake = await garbageServer(Buffer.concat([tokenHeader(TOKEN_CONTEXT_V2, 0xfffffff0), Buffer.alloc(16)]));
    const proxy = await tamperingProxy(settings.port, huge);
    try {
      for (let i = 0; i < 20; i++) {
        const { error } = await rejection(Remctl.connect(settings.host, { port: handshake.port, principal: settings.principal, idleTimeout: 2000 }));
        expect(error.message).toBe('error receiving token: token too larger');
        const connection = await Remctl.connect(settings.host, { port: proxy.port, principal: settings.principal, idleTimeout: 2000 });
        const failed = await rejection(connection.run(['test', 'test']));
        expect(failed.error).toBeInstanceOf(RemctlError);
        expect(failed.error.message).toBe('error receiving token: token too larger');
        await connection.close();
        peak = Math.max(peak, process.memoryUsage().rss);
      }
    } finally {
      await handshake.close();
      await proxy.close();
    }
    const grown = peak - rssBefore;
    console.info(`RSS before ${(rssBefore / 2 ** 20).toFixed(1)} MiB, peak ${(peak / 2 ** 20).toFixed(1)} MiB over 40 refusals of 4 GiB tokens`);
    expect(grown).toBeLessThan(64 * 1024 * 1024);
  });

  test('after authentication, a reply that is not a GSS-API token fails the command with a GSS-API error', async () => {
    const proxy = await tamperingProxy(settings.port, Buffer.concat([tokenHeader(TOKEN_DATA_V2, 40), Buffer.alloc(40, 7)]));
    try {
      const connection = await Remctl.connect(settings.host, { port: proxy.port, principal: settings.principal, idleTimeout: 2000 });
      const { error } = await rejection(connection.run(['test', 'test']));
      expect(error).toBeInstanceOf(RemctlError);
      expect(error).not.toBeInstanceOf(RemctlProtocolError);
      expect(error.message).toMatch(/^GSS-API error receiving token: /);
      await connection.close();
    } finally {
      await proxy.close();
    }
  });

  test('after authentication, a server that hangs up halfway through a token fails the command with a RemctlError', async () => {
    const proxy = await tamperingProxy(settings.port, Buffer.concat([tokenHeader(TOKEN_DATA_V2, 1000), Buffer.alloc(10)]), { close: true });
    try {
      const connection = await Remctl.connect(settings.host, { port: proxy.port, principal: settings.principal });
      const { error, ms } = await rejection(connection.run(['test', 'test']));
      expect(error).toBeInstanceOf(RemctlError);
      expect(error.message).toMatch(/^error receiving token: /);
      expect(ms).toBeLessThan(1000);
      await connection.close();
    } finally {
      await proxy.close();
    }
  });
});

describe('credentials', () => {
  const failures = new Map<string, string>();

  test('an expired ticket fails with a GSS-API error that says so', async () => {
    const ccache = await freshCcache('short-lived', ['-l', '5s']);
    await sleep(6000);
    const { error } = await rejection(remctl(settings.host, ['test', 'test'], { ...where, ccache }));
    expect(error).toBeInstanceOf(RemctlError);
    expect(error.message).toMatch(/^GSS-API error initializing context: .*Ticket expired/);
    expect(error).toMatchObject({ code: 'ERR_REMCTL_AUTH' });
    failures.set('expired', error.message);
  }, 20_000);

  test('a ticket cache that does not exist fails with a GSS-API error that says so', async () => {
    const { error } = await rejection(
      Remctl.connect(settings.host, { ...where, ccache: `FILE:${settings.dir}/no-such.ccache` }),
    );
    expect(error).toBeInstanceOf(RemctlError);
    expect(error.message).toMatch(/^GSS-API error importing ticket cache: .*No credentials cache found/);
    expect(error).toMatchObject({ code: 'ERR_REMCTL_AUTH' });
    failures.set('missing', error.message);
  });

  test('a principal the KDC does not know fails with a GSS-API error that names it', async () => {
    const { error } = await rejection(remctl(settings.host, ['test', 'test'], { ...where, principal: `host/nobody@${settings.realm}` }));
    expect(error).toBeInstanceOf(RemctlError);
    expect(error.message).toMatch(/^GSS-API error initializing context: .*Server host\/nobody@FAULTS\.REMCTL not found in Kerberos database/);
    failures.set('wrong principal', error.message);
  });

  test('a command the ACL refuses fails with a RemctlProtocolError, ERROR_ACCESS', async () => {
    const { error } = await rejection(remctl(settings.host, ['restricted', 'x'], where));
    expect(error).toBeInstanceOf(RemctlProtocolError);
    expect(error).toMatchObject({ message: 'Access denied', errorCode: ERROR_ACCESS, code: 'ERROR_ACCESS' });
    failures.set('acl', error.message);
  });

  test('the four failures are told apart: no two share a message', () => {
    expect([...failures.keys()].sort()).toStrictEqual(['acl', 'expired', 'missing', 'wrong principal']);
    expect(new Set(failures.values()).size).toBe(4);
  });
});

describe('a busy process', () => {
  test('with more than 1100 descriptors open, calls with a timeout and with an abort work and corrupt nothing', async () => {
    const held: number[] = [];
    const identity = (fd: number) => {
      const stat = fstatSync(fd);
      return `${stat.dev}:${stat.ino}:${stat.mode}`;
    };
    try {
      for (let i = 0; i < 1100; i++) held.push(openSync('/dev/null', 'r'));
      expect(held.at(-1)).toBeGreaterThanOrEqual(1024);
      const nullIdentity = identity(held[0]!);
      const before = await settledCounts();

      const connection = await Remctl.connect(settings.host, { ...where, idleTimeout: 1000 });
      const data = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const echoed = await connection.run(['test', 'stdin', data]);
      expect(echoed.stdout.equals(data)).toBe(true);
      const big = await connection.run(['test', 'big', String(4 * 1024 * 1024)]);
      expect(big.stdout.equals(bigPattern(4 * 1024 * 1024))).toBe(true);

      // The timeout is enforced outside libremctl, so no select() sees descriptors past FD_SETSIZE.
      const { error: timedOut, ms } = await rejection(connection.run(['test', 'sleep', '5']));
      expect(timedOut.message).toBe('error receiving token: timed out');
      expect(ms).toBeLessThan(2500);
      expect((await connection.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');

      const controller = new AbortController();
      const aborted = connection.run(['test', 'sleep', '5'], { signal: controller.signal });
      await sleep(200);
      controller.abort();
      expect((await rejection(aborted)).error).toBe(controller.signal.reason);
      // The abort closed the connection under it; the next call reopens it, past 1024 too.
      expect((await connection.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');

      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => remctl(settings.host, ['test', 'echo', `call ${i}`], { ...where, idleTimeout: 2000, encoding: 'utf8' })),
      );
      results.forEach((result, i) => expect(result.stdout).toBe(`call ${i}\n`));
      await connection.close();

      // None of the descriptors we held was closed, reused or written over.
      for (const fd of held) expect(identity(fd)).toBe(nullIdentity);
      expect(await countsSettle(before)).toStrictEqual(before);
    } finally {
      for (const fd of held) closeSync(fd);
    }
  });
});

describe('ticket caches kept apart', () => {
  test('two connections at once with different ccache options authenticate as two principals, and KRB5CCNAME is never touched', async () => {
    const before = process.env.KRB5CCNAME;
    const seen = new Set<string | undefined>();
    const watcher = setInterval(() => seen.add(process.env.KRB5CCNAME), 1);
    try {
      const [asClient, asOther] = await Promise.all([
        Remctl.connect(settings.host, { ...where, ccache: settings.ccache }),
        Remctl.connect(settings.host, { ...where, ccache: settings.otherCcache }),
      ]);
      const rounds = await Promise.all(
        Array.from({ length: 20 }, async () => [
          (await asClient.run(['test', 'whoami'], { encoding: 'utf8' })).stdout,
          (await asOther.run(['test', 'whoami'], { encoding: 'utf8' })).stdout,
          (await remctl(settings.host, ['test', 'whoami'], { ...where, ccache: settings.otherCcache, encoding: 'utf8' })).stdout,
        ]),
      );
      for (const [client, other, oneShot] of rounds) {
        expect(client).toBe(`${settings.clientPrincipal}\n`);
        expect(other).toBe(`${settings.otherPrincipal}\n`);
        expect(oneShot).toBe(`${settings.otherPrincipal}\n`);
      }
      // What each identity may do follows it.
      await expect(asClient.run(['restricted', 'x'])).rejects.toThrow(RemctlProtocolError);
      expect((await asOther.run(['restricted', 'x'], { encoding: 'utf8' })).stdout).toBe('restricted ok\n');
      await asClient.close();
      await asOther.close();
    } finally {
      clearInterval(watcher);
    }
    seen.add(process.env.KRB5CCNAME);
    expect([...seen]).toStrictEqual([before]);
    expect(before).toBe(settings.ccache);
  });
});

describe('mutual authentication', () => {
  test('a server that holds the keys of another principal than the one asked for is refused with a GSS-API error', async () => {
    const impostor = await startExtraRemctld(settings, {
      principal: settings.otherServicePrincipal,
      keytab: settings.otherServiceKeytab,
    });
    try {
      const { error } = await rejection(Remctl.connect(settings.host, { port: impostor.port, principal: settings.principal }));
      expect(error).toBeInstanceOf(RemctlError);
      expect(error).not.toBeInstanceOf(RemctlProtocolError);
      expect(error.message).toMatch(/^GSS-API error initializing context: .*The ticket isn't for us/);
    expect(error).toMatchObject({ code: 'ERR_REMCTL_AUTH' });
      const r = _remctl.remctl_new();
      expect(await _remctl.remctl_open(r, settings.host, impostor.port, settings.principal)).toBe(false);
      expect(_remctl.remctl_error(r)).toBe(error.message);
      await _remctl.remctl_close(r);
      // The C client refuses it too, and the server is fine for its own name.
      const c = await runCRemctl(['test', 'test'], { settings, port: impostor.port });
      expect(c.status).not.toBe(0);
      const { stdout } = await remctl(settings.host, ['test', 'test'], { port: impostor.port, principal: impostor.principal, encoding: 'utf8' });
      expect(stdout).toBe('hello world\n');
    } finally {
      await impostor.stop();
    }
  });
});

describe('the end of a process or a worker_thread', () => {
  test('a process that calls process.exit() with a 10-second command in flight every way, also in a worker_thread, exits at once, cleanly', async () => {
    let exitingAt: number | undefined;
    const result = await runNode(EXIT_IN_FLIGHT, (line, at) => {
      if (line === 'exiting') exitingAt = at;
    });
    expect({ code: result.code, signal: result.signal, stderr: result.stderr }).toStrictEqual({ code: 0, signal: null, stderr: '' });
    expect(exitingAt).toBeDefined();
    // Every call was running on the server when the process exited.
    const { commands } = JSON.parse(result.stdout.split('\n')[0]!) as { commands: string[] };
    expect(commands).toHaveLength(8);
    const log = await readFile(settings.remctldLog, 'utf8');
    for (const command of commands) expect(log).toContain(`COMMAND from ${settings.clientPrincipal}: ${command}\n`);
    // The worker's environment is torn down before the process ends: unless its cleanup hook
    // interrupts the worker's four calls, joining their threads waits for the commands to end.
    const exitMs = result.exitedAt - exitingAt!;
    expect(exitMs).toBeLessThan(3000);
    console.info(`process.exit() with eight calls in flight took ${exitMs.toFixed(0)} ms`);
  });

  test('a worker_thread terminated with calls in flight leaves the process healthy: threads and descriptors back to where they were', async () => {
    const result = await runNode(WORKER_IN_FLIGHT);
    expect({ code: result.code, signal: result.signal, stderr: result.stderr }).toStrictEqual({ code: 0, signal: null, stderr: '' });
    const report = JSON.parse(result.stdout);
    expect(report.rounds).toHaveLength(3);
    for (const round of report.rounds) {
      expect(round.exitCode).toBe(1);
      expect(round.during.threads).toBeGreaterThan(report.before.threads);
      expect(round.after).toStrictEqual(report.before);
      expect(round.terminateMs).toBeLessThan(1000);
    }
    expect(report.last).toStrictEqual({ stdout: 'hello world\n', stderr: '', status: 0 });
    console.info(`worker.terminate() with calls in flight: ${JSON.stringify(report)}`);
  });
});

test('after every fault above, the realm serves commands as it did at the start', async () => {
  expect((await remctl(settings.host, ['test', 'test'], { ...where, encoding: 'utf8' })).stdout).toBe('hello world\n');
});
