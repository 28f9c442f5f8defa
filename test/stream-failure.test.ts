// Streams fail loudly: once a command was sent, any failure (a timeout, an abort, the server
// killed, an error token, garbage on the wire) destroys stdout and stderr with that error, so
// that pipeline(), for await and finished() reject with it. Only a status token ends them
// normally, whatever the status. A truncated file must never look like a complete one.

import { Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { Remctl, RemctlError, RemctlProtocolError, spawn, type RemctlProcess } from '../dist/index.js';
import { TOKEN_DATA_V2, tamperingProxy, tokenHeader } from './fault-servers.js';
import { rejection } from './probes.js';
import { realm } from './realm-context.mjs';
import { processIsAlive, startExtraRemctld, type ExtraRemctld } from './realm-control.mjs';
import { bigPattern } from './realm.mjs';

const settings = realm();
const { host } = settings;
const server = { port: settings.port, principal: settings.principal };

/** A sink that keeps what it is given. */
function sink() {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      callback();
    },
  });
  return { stream, bytes: () => Buffer.concat(chunks) };
}

/** pipeline() of stdout and of stderr into sinks: what each did. */
async function pipeBoth(child: RemctlProcess) {
  const out = sink();
  const err = sink();
  const settle = (promise: Promise<void>) =>
    promise.then(
      () => ({ ok: true as const }),
      (error: unknown) => ({ ok: false as const, error }),
    );
  const [stdout, stderr] = await Promise.all([settle(pipeline(child.stdout, out.stream)), settle(pipeline(child.stderr, err.stream))]);
  return { stdout, stderr, out: out.bytes(), err: err.bytes() };
}

describe('pipeline(child.stdout, sink) resolves only on a status token', () => {
  test('it resolves on status 0 with every byte', async () => {
    const child = spawn(host, ['test', 'big', '1000000'], server);
    const piped = await pipeBoth(child);
    expect(piped.stdout).toEqual({ ok: true });
    expect(piped.stderr).toEqual({ ok: true });
    expect(piped.out.equals(bigPattern(1_000_000))).toBe(true);
    expect(await child.status).toBe(0);
  });

  test('it resolves on status 3, as child_process streams end whatever the exit code', async () => {
    const child = spawn(host, ['test', 'status', '3'], server);
    const piped = await pipeBoth(child);
    expect(piped.stdout).toEqual({ ok: true });
    expect(await child.status).toBe(3);
  });

  test('it rejects with the timeout when the server goes silent longer than the timeout', async () => {
    // "first", then two seconds of silence.
    const child = spawn(host, ['test', 'lines'], { ...server, idleTimeout: 1000 });
    const piped = await pipeBoth(child);
    const { error } = await rejection(child.status);
    expect(error).toBeInstanceOf(RemctlError);
    expect(error.message).toBe('error receiving token: timed out');
    expect(piped.stdout).toEqual({ ok: false, error });
    expect(piped.stderr).toEqual({ ok: false, error });
    expect(piped.out.toString()).toBe('first\n');
  });

  test('it rejects with the abort reason when the caller aborts mid-stream, by signal or by abort()', async () => {
    const controller = new AbortController();
    const reason = new Error('enough of that');
    const bySignal = spawn(host, ['test', 'big', String(256 * 1024 * 1024)], { ...server, signal: controller.signal });
    const byAbort = spawn(host, ['test', 'lines'], server);
    bySignal.stdout.once('data', () => controller.abort(reason));
    byAbort.stdout.once('data', () => byAbort.abort());
    const [signalled, aborted] = await Promise.all([pipeBoth(bySignal), pipeBoth(byAbort)]);
    expect(signalled.stdout).toEqual({ ok: false, error: reason });
    expect(signalled.stderr).toEqual({ ok: false, error: reason });
    const abortError = (await rejection(byAbort.status)).error;
    expect(abortError).toMatchObject({ name: 'AbortError' });
    expect(aborted.stdout).toEqual({ ok: false, error: abortError });
  });

  test('it rejects with the error token of a command the server refuses, and for await and finished() reject with it too', async () => {
    const child = spawn(host, ['test', 'bogus'], server);
    const piped = await pipeBoth(child);
    const { error } = await rejection(child.status);
    expect(error).toBeInstanceOf(RemctlProtocolError);
    expect(piped.stdout).toEqual({ ok: false, error });

    const iterated = spawn(host, ['test', 'bogus'], server);
    const iterating = (async () => {
      for await (const chunk of iterated.stdout) void chunk;
    })();
    await expect(iterating).rejects.toBeInstanceOf(RemctlProtocolError);
    await expect(finished(iterated.stderr)).rejects.toBeInstanceOf(RemctlProtocolError);
  });

  test('it rejects when the server sends garbage after the command', async () => {
    // Authentication is real remctld's; then the server's answer is replaced by a data token
    // that is not GSS-API at all, or by half a token and a hang-up.
    for (const [injection, close] of [
      [Buffer.concat([tokenHeader(TOKEN_DATA_V2, 40), Buffer.alloc(40, 7)]), false],
      [Buffer.concat([tokenHeader(TOKEN_DATA_V2, 1000), Buffer.alloc(10)]), true],
    ] as const) {
      const proxy = await tamperingProxy(settings.port, injection, { close });
      try {
        const child = spawn(host, ['test', 'test'], { port: proxy.port, principal: settings.principal, idleTimeout: 5000 });
        const piped = await pipeBoth(child);
        const { error } = await rejection(child.status);
        expect(error).toBeInstanceOf(RemctlError);
        expect(error).not.toBeInstanceOf(RemctlProtocolError);
        expect(error.message).toMatch(/receiving token/);
        expect(piped.stdout).toEqual({ ok: false, error });
        expect(piped.stderr).toEqual({ ok: false, error });
      } finally {
        await proxy.close();
      }
    }
  });
});

describe('remctld killed mid-stream', () => {
  let extra: ExtraRemctld;
  beforeAll(async () => {
    extra = await startExtraRemctld(settings, { principal: settings.otherServicePrincipal, keytab: settings.otherServiceKeytab });
  });
  afterAll(async () => {
    await extra?.stop();
  });

  for (const via of ['spawn()', 'Remctl#spawn()'] as const) {
    test(`with ${via}, pipeline() rejects with the lost connection, after a true prefix of the output`, async () => {
      const where = { port: extra.port, principal: extra.principal };
      const r = via === 'Remctl#spawn()' ? await Remctl.connect(host, where) : undefined;
      try {
        const size = 512 * 1024 * 1024;
        const child = r ? r.spawn(['test', 'big', String(size)]) : spawn(host, ['test', 'big', String(size)], where);
        const out = sink();
        child.stderr.resume();
        const piping = pipeline(child.stdout, out.stream).then(
          () => ({ ok: true as const }),
          (error: unknown) => ({ ok: false as const, error }),
        );
        await new Promise((resolve) => child.stdout.once('data', resolve));
        // The process group: remctld and the child serving this connection.
        process.kill(-extra.pid, 'SIGKILL');
        await vi.waitFor(() => expect(processIsAlive(extra.pid)).toBe(false), { timeout: 5000 });
        const outcome = await piping;
        const { error } = await rejection(child.status);
        expect(error).toBeInstanceOf(RemctlError);
        expect(error).not.toBeInstanceOf(RemctlProtocolError);
        expect(outcome).toEqual({ ok: false, error });
        const data = out.bytes();
        expect(data.length).toBeLessThan(size);
        expect(data.equals(bigPattern(data.length))).toBe(true);
      } finally {
        await r?.close();
        await extra.stop();
        extra = await startExtraRemctld(settings, { principal: settings.otherServicePrincipal, keytab: settings.otherServiceKeytab });
      }
    });
  }
});

test('a stream nobody listens to for errors does not end the process when its command fails', async () => {
  const uncaught: unknown[] = [];
  const onException = (error: unknown) => uncaught.push(error);
  process.on('uncaughtException', onException);
  try {
    const child = spawn(host, ['test', 'bogus'], server);
    await rejection(child.status);
    await sleep(50);
    expect(child.stdout.destroyed).toBe(true);
    expect(child.stdout.errored).toBeInstanceOf(RemctlProtocolError);
  } finally {
    process.off('uncaughtException', onException);
  }
  expect(uncaught).toEqual([]);
});
