// spawn() and Remctl#spawn(): a command's output as streams, each token as it arrives, with
// backpressure all the way to the server. Every test runs against the realm's stock remctld.

import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, test } from 'vitest';
import {
  ERROR_ACCESS,
  ERROR_UNKNOWN_COMMAND,
  Remctl,
  RemctlError,
  RemctlProcess,
  RemctlProtocolError,
  spawn,
} from '../dist/index.js';
import { countsSettle, settledCounts, socketInodes, socketsClosed, socketsSince } from './metrics.mjs';
import { realm } from './realm-context.mjs';
import { freePort } from './realm-control.mjs';
import { bigPattern } from './realm.mjs';

const settings = realm();
const { host } = settings;
const server = { port: settings.port, principal: settings.principal };
const MiB = 1024 * 1024;

/** Everything a stream yields, as one Buffer. */
async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A process's stdout, stderr and status, read to the end. */
async function result(child: RemctlProcess) {
  const [stdout, stderr, status] = await Promise.all([collect(child.stdout), collect(child.stderr), child.status]);
  return { stdout, stderr, status };
}

/** What a promise rejects with, and how many milliseconds after `from` it did. */
async function rejection(promise: Promise<unknown>, from = performance.now()): Promise<{ error: unknown; ms: number }> {
  try {
    await promise;
  } catch (error) {
    return { error, ms: performance.now() - from };
  }
  throw new Error('expected the promise to reject, but it resolved');
}

/** A loopback listener that counts the connections it accepts and never answers. */
async function countingListener(): Promise<{ port: number; accepted: () => number; close: () => Promise<void> }> {
  let accepted = 0;
  const sockets = new Set<Socket>();
  const listener: Server = createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.resume();
  });
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  return {
    port: (listener.address() as AddressInfo).port,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        listener.close(() => resolve());
      }),
  };
}

/** Samples the process's RSS every few milliseconds; peak() is the largest growth over the start. */
function rssWatch() {
  const start = process.memoryUsage().rss;
  let peak = start;
  const sample = () => {
    peak = Math.max(peak, process.memoryUsage().rss);
  };
  const timer = setInterval(sample, 5);
  return {
    sample,
    growth: () => peak - start,
    stop: () => {
      clearInterval(timer);
      sample();
      return peak - start;
    },
  };
}

// test big's output repeats a 65-byte line; a chunk at any offset is this slice of it.
const PATTERN = bigPattern(1024 * 1024 + 65);
const expectedAt = (offset: number, length: number) => PATTERN.subarray(offset % 65, (offset % 65) + length);

describe('spawn()', () => {
  test('streams stdout and stderr apart, then resolves status and emits exit with the status', async () => {
    const child = spawn(host, ['test', 'echo', 'one', 'two words'], server);
    expect(child).toBeInstanceOf(RemctlProcess);
    const exited = once(child, 'exit');
    const { stdout, stderr, status } = await result(child);
    expect(stdout.toString()).toBe('one\ntwo words\n');
    expect(stderr.toString()).toBe('stderr line\n');
    expect(status).toBe(0);
    expect(await exited).toEqual([0]);
  });

  test('resolves status, not rejects, for a command that exits non-zero', async () => {
    const child = spawn(host, ['test', 'status', '3'], server);
    const exited = once(child, 'exit');
    expect(await result(child)).toEqual({ stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), status: 3 });
    expect(await exited).toEqual([3]);

    const stderrOnly = await result(spawn(host, ['test', 'stderr'], server));
    expect(stderrOnly).toEqual({ stdout: Buffer.alloc(0), stderr: Buffer.from('this is stderr\n'), status: 2 });
  });

  test('passes every byte value through, in the arguments and in the output', async () => {
    const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const data = Buffer.concat([everyByte, Buffer.from([0, 0, 0xff, 0]), everyByte]);
    const { stdout, status } = await result(spawn(host, ['test', 'stdin', data], server));
    expect(status).toBe(0);
    expect(stdout.equals(data)).toBe(true);
  });

  test('streams 8 MiB of output byte for byte', async () => {
    const size = 8 * MiB;
    const { stdout, stderr, status } = await result(spawn(host, ['test', 'big', String(size)], server));
    expect(status).toBe(0);
    expect(stderr.length).toBe(0);
    expect(stdout.length).toBe(size);
    expect(stdout.equals(bigPattern(size))).toBe(true);
  });

  test('an output token is readable as soon as it arrives: test lines gives its first line at once, the second 2 s later', async () => {
    const started = performance.now();
    const child = spawn(host, ['test', 'lines'], server);
    const arrivals: Array<{ ms: number; data: string }> = [];
    child.stdout.on('data', (chunk: Buffer) => arrivals.push({ ms: performance.now() - started, data: chunk.toString() }));
    child.stderr.resume();
    let statusAt = 0;
    const status = await child.status.then((value) => {
      statusAt = performance.now() - started;
      return value;
    });
    await finished(child.stdout);
    expect(status).toBe(0);
    expect(arrivals.map((arrival) => arrival.data)).toEqual(['first\n', 'second\n']);
    const [first, second] = arrivals as [(typeof arrivals)[0], (typeof arrivals)[0]];
    console.info(`test lines: first line after ${Math.round(first.ms)} ms, second after ${Math.round(second.ms)} ms`);
    expect(first.ms).toBeLessThan(1000);
    expect(second.ms - first.ms).toBeGreaterThanOrEqual(1900);
    expect(second.ms).toBeLessThan(4000);
    expect(statusAt).toBeGreaterThanOrEqual(second.ms);
  });
});

describe('spawn() backpressure', () => {
  test(
    'piping 256 MiB into a consumer that is slow for its first 8 MiB keeps RSS growth under 32 MiB, every byte intact',
    async () => {
      const size = 256 * MiB;
      const slowFor = 8 * MiB;
      // Let the heap settle from earlier tests before the baseline is taken.
      await sleep(100);
      const rss = rssWatch();
      const child = spawn(host, ['test', 'big', String(size)], server);
      let received = 0;
      let corrupt = 0;
      let mostBuffered = 0;
      let slowEndedAt = 0;
      const started = performance.now();
      const sink = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          if (!chunk.equals(expectedAt(received, chunk.length))) corrupt++;
          received += chunk.length;
          mostBuffered = Math.max(mostBuffered, child.stdout.readableLength);
          rss.sample();
          if (received < slowFor) {
            // 1 ms per 4 KiB, however the output is cut into chunks.
            setTimeout(callback, Math.ceil(chunk.length / 4096));
          } else {
            if (slowEndedAt === 0) slowEndedAt = performance.now();
            callback();
          }
        },
      });
      child.stderr.resume();
      child.stdout.pipe(sink);
      const status = await child.status;
      await finished(sink);
      const growth = rss.stop();
      const ms = performance.now() - started;
      console.info(
        `256 MiB through a slow consumer: peak RSS growth ${(growth / MiB).toFixed(1)} MiB, ` +
          `slow phase ${Math.round(slowEndedAt - started)} ms, total ${Math.round(ms)} ms, ` +
          `most buffered in stdout ${mostBuffered} bytes`,
      );
      expect(status).toBe(0);
      expect(received).toBe(size);
      expect(corrupt).toBe(0);
      // The slow phase ran at a fraction of the server's speed: without backpressure, tens of
      // MiB would have piled up in it.
      expect(slowEndedAt - started).toBeGreaterThan(1000);
      expect(mostBuffered).toBeLessThan(128 * 1024);
      expect(growth).toBeLessThan(32 * MiB);
    },
    120_000,
  );

  test('while stdout is paused no more output is taken from the server, and reading resumes where it stopped', async () => {
    const size = 64 * MiB;
    const child = spawn(host, ['test', 'big', String(size)], server);
    child.stderr.resume();
    let consumed = 0;
    let corrupt = 0;
    let paused = false;
    child.stdout.on('data', (chunk: Buffer) => {
      if (!chunk.equals(expectedAt(consumed, chunk.length))) corrupt++;
      consumed += chunk.length;
      if (consumed >= MiB && !paused) {
        paused = true;
        child.stdout.pause();
      }
    });
    while (!child.stdout.isPaused()) await sleep(5);
    // Taken from the server so far: what the consumer read plus what the stream holds.
    const taken = () => consumed + child.stdout.readableLength;
    await sleep(200);
    const before = taken();
    const rss = rssWatch();
    await sleep(1000);
    const after = taken();
    const growth = rss.stop();
    console.info(
      `paused 1 s after ${consumed} bytes: ${before} bytes taken before, ${after} after, ` +
        `${child.stdout.readableLength} buffered, RSS growth ${(growth / MiB).toFixed(1)} MiB`,
    );
    expect(after).toBe(before);
    expect(child.stdout.readableLength).toBeLessThan(128 * 1024);
    expect(growth).toBeLessThan(8 * MiB);

    child.stdout.resume();
    expect(await child.status).toBe(0);
    await finished(child.stdout);
    expect(consumed).toBe(size);
    expect(corrupt).toBe(0);
  });
});

describe('spawn() failures', () => {
  test('an unknown command rejects status with a RemctlProtocolError and emits it to an error listener', async () => {
    const child = spawn(host, ['test', 'bogus'], server);
    const emitted: unknown[] = [];
    child.on('error', (error) => emitted.push(error));
    let exited = false;
    child.on('exit', () => {
      exited = true;
    });
    const { error } = await rejection(child.status);
    expect(error).toBeInstanceOf(RemctlProtocolError);
    expect(error).toMatchObject({ message: 'Unknown command', errorCode: ERROR_UNKNOWN_COMMAND, code: 'ERROR_UNKNOWN_COMMAND' });
    expect(emitted).toEqual([error]);
    expect(exited).toBe(false);
    // Both streams fail with it: a consumer never takes the output for complete.
    await expect(collect(child.stdout)).rejects.toBe(error);
    await expect(collect(child.stderr)).rejects.toBe(error);
  });

  test('a command the ACL refuses rejects status with a RemctlProtocolError of code ERROR_ACCESS', async () => {
    const { error } = await rejection(spawn(host, ['restricted', 'x'], server).status);
    expect(error).toBeInstanceOf(RemctlProtocolError);
    expect(error).toMatchObject({ message: 'Access denied', errorCode: ERROR_ACCESS, code: 'ERROR_ACCESS' });
  });

  test("a closed port rejects status with a RemctlError in libremctl's words, not a protocol error", async () => {
    const closedPort = await freePort();
    const child = spawn(host, ['test', 'test'], { ...server, port: closedPort });
    const { error } = await rejection(child.status);
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).not.toBeInstanceOf(RemctlProtocolError);
    expect((error as Error).message).toBe(`cannot connect to localhost (port ${closedPort}): Connection refused`);
    // Both streams fail with it.
    await expect(collect(child.stdout)).rejects.toBe(error);
    await expect(collect(child.stderr)).rejects.toBe(error);
  });

  test("the timeout option rejects a command silent for longer with 'error receiving token: timed out'", async () => {
    const started = performance.now();
    const { error, ms } = await rejection(spawn(host, ['test', 'sleep', '3'], { ...server, idleTimeout: 1000 }).status, started);
    expect(error).toBeInstanceOf(RemctlError);
    expect((error as Error).message).toBe('error receiving token: timed out');
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(2500);
  });

  test('a process that fails with nobody awaiting status or listening for error causes no unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const uncaught: unknown[] = [];
    const onRejection = (reason: unknown) => unhandled.push(reason);
    const onException = (error: unknown) => uncaught.push(error);
    process.on('unhandledRejection', onRejection);
    process.on('uncaughtException', onException);
    try {
      const closedPort = await freePort();
      const children = [
        spawn(host, ['test', 'bogus'], server),
        spawn(host, ['test', 'test'], { ...server, port: closedPort }),
        spawn(host, ['test', 'sleep', '5'], server),
      ];
      children[2]!.abort();
      for (const child of children) {
        child.stdout.resume();
        child.stderr.resume();
        const error = await rejection(child.status);
        await expect(finished(child.stdout)).rejects.toBe(error.error);
        await expect(finished(child.stderr)).rejects.toBe(error.error);
      }
      // Unhandled rejections are reported after the microtask queue drains.
      await sleep(100);
    } finally {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    }
    expect(unhandled).toEqual([]);
    expect(uncaught).toEqual([]);
  });
});

describe('spawn() aborting', () => {
  test('abort() during test sleep 5 rejects status with an AbortError within a second', async () => {
    const child = spawn(host, ['test', 'sleep', '5'], server);
    await sleep(300);
    const abortedAt = performance.now();
    child.abort();
    const { error, ms } = await rejection(child.status, abortedAt);
    console.info(`abort() rejected status after ${ms.toFixed(1)} ms`);
    expect(error).toBeInstanceOf(DOMException);
    expect(error).toMatchObject({ name: 'AbortError' });
    expect(ms).toBeLessThan(1000);
    await expect(collect(child.stdout)).rejects.toBe(error);
  });

  test('abort(reason) rejects status with that reason, and kill() aborts like abort(): each time the command\'s thread and socket are gone at once', async () => {
    const before = await settledCounts();
    const reason = new Error('no longer needed');
    let sockets = socketInodes();
    const aborted = spawn(host, ['test', 'sleep', '10'], server);
    await sleep(300);
    let mine = socketsSince(sockets);
    expect(mine).not.toHaveLength(0);
    aborted.abort(reason);
    expect((await rejection(aborted.status)).error).toBe(reason);
    // Interrupted, not left to wait the command out: its socket closed and its thread gone within
    // 3 s of a 10 s sleep.
    expect(await socketsClosed(mine)).toStrictEqual([]);
    expect(await countsSettle(before)).toStrictEqual(before);

    sockets = socketInodes();
    const killed = spawn(host, ['test', 'sleep', '10'], server);
    await sleep(300);
    mine = socketsSince(sockets);
    expect(mine).not.toHaveLength(0);
    const killedAt = performance.now();
    killed.kill();
    const { error, ms } = await rejection(killed.status, killedAt);
    expect(error).toMatchObject({ name: 'AbortError' });
    expect(ms).toBeLessThan(1000);
    expect(await socketsClosed(mine)).toStrictEqual([]);
    expect(await countsSettle(before)).toStrictEqual(before);
  });

  test('aborting the signal option while the command runs rejects status promptly with the signal reason, and the command\'s thread and socket are gone at once', async () => {
    const before = await settledCounts();
    let sockets = socketInodes();
    const controller = new AbortController();
    const child = spawn(host, ['test', 'sleep', '10'], { ...server, signal: controller.signal });
    await sleep(300);
    let mine = socketsSince(sockets);
    expect(mine).not.toHaveLength(0);
    const abortedAt = performance.now();
    controller.abort();
    const { error, ms } = await rejection(child.status, abortedAt);
    expect(error).toBe(controller.signal.reason);
    expect(error).toMatchObject({ name: 'AbortError' });
    expect(ms).toBeLessThan(1000);
    // Interrupted, not left to wait the command out: its socket closed and its thread gone within
    // 3 s of a 10 s sleep.
    expect(await socketsClosed(mine)).toStrictEqual([]);
    expect(await countsSettle(before)).toStrictEqual(before);

    sockets = socketInodes();
    const timedOut = spawn(host, ['test', 'sleep', '10'], { ...server, signal: AbortSignal.timeout(1000) });
    const started = performance.now();
    // The socket of the call, seen while it waits for its command.
    await sleep(500);
    mine = socketsSince(sockets);
    expect(mine).not.toHaveLength(0);
    const late = await rejection(timedOut.status, started);
    expect(late.error).toMatchObject({ name: 'TimeoutError' });
    expect(late.ms).toBeLessThan(2000);
    expect(await socketsClosed(mine)).toStrictEqual([]);
    expect(await countsSettle(before)).toStrictEqual(before);
  });

  test('a signal aborted before spawn() rejects status with its reason and never connects', async () => {
    const listener = await countingListener();
    try {
      const reason = new Error('changed my mind');
      const child = spawn(host, ['test', 'test'], { port: listener.port, signal: AbortSignal.abort(reason) });
      expect((await rejection(child.status)).error).toBe(reason);
      await expect(collect(child.stdout)).rejects.toBe(reason);
      await sleep(100);
      expect(listener.accepted()).toBe(0);
    } finally {
      await listener.close();
    }
  });

  test('a signal aborted before spawn() never runs the command on the server', async () => {
    const marker = `never-run-${process.pid}-${Date.now()}`;
    for (let i = 0; i < 5; i++) {
      const child = spawn(host, ['test', 'echo', `${marker}-${i}`], { ...server, signal: AbortSignal.abort() });
      expect((await rejection(child.status)).error).toMatchObject({ name: 'AbortError' });
    }
    // remctld logs every command it runs; give it a moment to write.
    await sleep(500);
    const log = await readFile(settings.remctldLog, 'utf8');
    expect(log.split('\n').filter((line) => line.includes(marker))).toEqual([]);
  });

  test('a signal that never aborts changes nothing', async () => {
    const controller = new AbortController();
    const { stdout, status } = await result(spawn(host, ['test', 'test'], { ...server, signal: controller.signal }));
    expect(stdout.toString()).toBe('hello world\n');
    expect(status).toBe(0);
    controller.abort();
  });
});

describe('Remctl#spawn()', () => {
  test('streams a command on an open connection, which then runs more commands', async () => {
    await using r = await Remctl.connect(host, server);
    const child = r.spawn(['test', 'echo', 'a', 'b']);
    expect(await result(child)).toEqual({ stdout: Buffer.from('a\nb\n'), stderr: Buffer.from('stderr line\n'), status: 0 });
    const again = await r.run(['test', 'status', '4']);
    expect(again.status).toBe(4);
    expect(await result(r.spawn(['test', 'test']))).toMatchObject({ stdout: Buffer.from('hello world\n'), status: 0 });
  });

  test('a run() issued while a spawned command streams waits until that command has ended, and both are right', async () => {
    await using r = await Remctl.connect(host, server);
    const started = performance.now();
    const order: string[] = [];
    const child = r.spawn(['test', 'lines']);
    const lines: Array<{ ms: number; data: string }> = [];
    child.stdout.on('data', (chunk: Buffer) => lines.push({ ms: performance.now() - started, data: chunk.toString() }));
    child.stderr.resume();
    const spawned = child.status.then((status) => {
      order.push('spawn');
      return status;
    });
    const ran = r.run(['test', 'echo', 'after'], { encoding: 'utf8' }).then((value) => {
      order.push('run');
      return { value, ms: performance.now() - started };
    });
    const [status, run] = await Promise.all([spawned, ran]);
    expect(order).toEqual(['spawn', 'run']);
    expect(status).toBe(0);
    expect(lines.map((line) => line.data)).toEqual(['first\n', 'second\n']);
    expect(run.value).toEqual({ stdout: 'after\n', stderr: 'stderr line\n', status: 0 });
    expect(run.ms).toBeGreaterThanOrEqual(lines[1]!.ms);
    expect(run.ms).toBeGreaterThanOrEqual(1900);
  });

  test('a protocol error rejects the spawned status and leaves the connection usable', async () => {
    await using r = await Remctl.connect(host, server);
    const { error } = await rejection(r.spawn(['test', 'bogus']).status);
    expect(error).toBeInstanceOf(RemctlProtocolError);
    expect(error).toMatchObject({ code: 'ERROR_UNKNOWN_COMMAND' });
    expect(r.opened).toBe(true);
    expect((await r.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
  });

  test('abort() ends the command promptly and closes the connection, as an aborted call does: its thread and socket are gone at once', async () => {
    const before = await settledCounts();
    const sockets = socketInodes();
    await using r = await Remctl.connect(host, server);
    const mine = socketsSince(sockets);
    expect(mine).not.toHaveLength(0);
    const child = r.spawn(['test', 'sleep', '10']);
    await sleep(300);
    const abortedAt = performance.now();
    child.abort();
    const { error, ms } = await rejection(child.status, abortedAt);
    expect(error).toMatchObject({ name: 'AbortError' });
    expect(ms).toBeLessThan(1000);
    // Interrupted, not left to wait the command out: its socket closed and its thread gone within
    // 3 s of a 10 s sleep.
    expect(await socketsClosed(mine)).toStrictEqual([]);
    expect(await countsSettle(before)).toStrictEqual(before);
    // The abort closed the connection under it; the next call reopens it.
    expect(r.opened).toBe(true);
    expect((await r.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
  });

  test('a spawn whose signal was aborted before its turn never sends its command: the next run() gets its own output', async () => {
    await using r = await Remctl.connect(host, server);
    const aborted = r.spawn(['test', 'echo', 'from the aborted spawn'], { signal: AbortSignal.abort() });
    expect((await rejection(aborted.status)).error).toMatchObject({ name: 'AbortError' });
    const next = await r.run(['test', 'echo', 'from the run'], { encoding: 'utf8' });
    expect(next).toEqual({ stdout: 'from the run\n', stderr: 'stderr line\n', status: 0 });
  });

  test('a spawn aborted while it waits behind a run() never sends its command: the run after it gets its own output', async () => {
    await using r = await Remctl.connect(host, server);
    const first = r.run(['test', 'sleep', '1'], { encoding: 'utf8' });
    const waiting = r.spawn(['test', 'echo', 'from the aborted spawn']);
    await sleep(200);
    waiting.abort();
    expect((await rejection(waiting.status)).error).toMatchObject({ name: 'AbortError' });
    expect(await first).toEqual({ stdout: 'slept 1\n', stderr: '', status: 0 });
    const next = await r.run(['test', 'status', '3'], { encoding: 'utf8' });
    expect(next).toEqual({ stdout: '', stderr: '', status: 3 });
  });

  test('backpressure holds on a connection too: a paused stdout stops taking output from the server', async () => {
    await using r = await Remctl.connect(host, server);
    const child = r.spawn(['test', 'big', String(32 * MiB)]);
    child.stderr.resume();
    let consumed = 0;
    let paused = false;
    child.stdout.on('data', (chunk: Buffer) => {
      consumed += chunk.length;
      if (consumed >= MiB && !paused) {
        paused = true;
        child.stdout.pause();
      }
    });
    while (!child.stdout.isPaused()) await sleep(5);
    await sleep(200);
    const before = consumed + child.stdout.readableLength;
    await sleep(800);
    expect(consumed + child.stdout.readableLength).toBe(before);
    child.stdout.resume();
    expect(await child.status).toBe(0);
    expect(consumed).toBe(32 * MiB);
  });
});
