// Leaks, the short version (`npm run soak` is the long one): thousands of commands over one
// connection and hundreds of one-shot calls, every kind in turn (test/leak-workloads.mjs),
// with resident memory, descriptors and threads sampled after a garbage collection; past a
// warm-up they must level off. Then a stress of 50 connections and 1 000 interleaved calls,
// aborts and closes in random order: every promise settles, nothing is mixed up between calls,
// and the thread and descriptor counts come back to where they were.

import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, test } from 'vitest';
import * as lib from '../dist/index.js';
import { commandOnConnection, oneShot } from './leak-workloads.mjs';
import { exposeGc, fdCount, mib, sample, secondHalfSlopes, threadCount, warmThreadpool, type Sample } from './metrics.mjs';
import { realm } from './realm-context.mjs';
import { freePort } from './realm-control.mjs';

const { Remctl, RemctlError, RemctlNotOpenedError } = lib;
const settings = realm();
const where = { port: settings.port, principal: settings.principal };
const gc = exposeGc();

// The short runs cannot see below malloc's own drift (a few hundred bytes per command over the
// first few thousand, flat after that: see npm run soak), so these bounds are for leaks of
// what the addon allocates per operation in bulk: output buffers, jobs, sockets, threads. The
// slopes are Theil-Sen's (see metrics.mjs), of resident memory as a whole and outside V8's heap.
const COMMANDS = 3000;
const COMMAND_WARM_UP = 1000;
const COMMAND_RSS_BOUND = 1024; // bytes per command
const ONE_SHOTS = 300;
const ONE_SHOT_WARM_UP = 50;
const ONE_SHOT_RSS_BOUND = 8 * 1024; // bytes per one-shot call
const SAMPLES = 30;

let closedPort: number;
beforeAll(async () => {
  closedPort = await freePort();
});

function report(name: string, samples: Sample[]) {
  const slopes = secondHalfSlopes(samples);
  const first = samples[0]!;
  const last = samples.at(-1)!;
  console.info(
    `${name}: rss ${mib(first.rss)} -> ${mib(last.rss)}; slopes over the second half: rss ${slopes.rss.toFixed(1)} B/op, ` +
      `outside V8's heap ${slopes.native.toFixed(1)} B/op, heapUsed ${slopes.heapUsed.toFixed(1)} B/op; ` +
      `fds ${first.fds} -> ${last.fds}; threads ${first.threads} -> ${last.threads}`,
  );
  return slopes;
}

async function measure(count: number, operation: (i: number) => Promise<void>, baseline: { threads: number; fds: number }) {
  const every = Math.floor(count / SAMPLES);
  const samples = [await sample(0, gc, baseline)];
  for (let i = 0; i < count; i++) {
    await operation(i);
    if ((i + 1) % every === 0) samples.push(await sample(i + 1, gc, baseline));
  }
  return samples;
}

describe('memory, descriptors and threads level off', () => {
  test(`${COMMANDS} commands of every kind over one connection`, async () => {
    const connection = await Remctl.connect(settings.host, where);
    try {
      for (let i = 0; i < COMMAND_WARM_UP; i++) await commandOnConnection(lib, connection, i);
      // libuv's threads in the baseline, whether or not anything has started them yet.
      await warmThreadpool();
      const warm = await sample(0, gc);
      const baseline = { threads: warm.threads, fds: warm.fds };
      const samples = await measure(COMMANDS, (i) => commandOnConnection(lib, connection, i), baseline);
      const slopes = report(`${COMMANDS} commands`, samples);
      expect(slopes.rss).toBeLessThan(COMMAND_RSS_BOUND);
      expect(slopes.native).toBeLessThan(COMMAND_RSS_BOUND);
      // One connection throughout: not one thread or descriptor more, ever.
      for (const s of samples) expect({ threads: s.threads, fds: s.fds }).toStrictEqual(baseline);
    } finally {
      await connection.close();
    }
  }, 120_000);

  test(`${ONE_SHOTS} one-shot calls of every kind`, async () => {
    for (let i = 0; i < ONE_SHOT_WARM_UP; i++) await oneShot(lib, settings, closedPort, i);
    await warmThreadpool();
    const warm = await sample(0, gc);
    const baseline = { threads: warm.threads, fds: warm.fds };
    const samples = await measure(ONE_SHOTS, (i) => oneShot(lib, settings, closedPort, i), baseline);
    const slopes = report(`${ONE_SHOTS} one-shot calls`, samples);
    expect(slopes.rss).toBeLessThan(ONE_SHOT_RSS_BOUND);
    expect(slopes.native).toBeLessThan(ONE_SHOT_RSS_BOUND);
    // Each call's threads and descriptors are gone once it has settled.
    for (const s of samples) expect({ threads: s.threads, fds: s.fds }).toStrictEqual(baseline);
  }, 120_000);
});

/** Waits for a call that is to be aborted; anything but the abort is passed on. */
async function aborted(call: Promise<unknown>, isTheAbort: (error: unknown) => boolean) {
  try {
    await call;
  } catch (error) {
    if (isTheAbort(error)) return;
    throw error;
  }
  throw new Error('an aborted call resolved');
}

/** A small deterministic generator, so that a failing order can be replayed from its seed. */
function random(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('concurrency stress', () => {
  const CONNECTIONS = 50;
  const CALLS = 1000;
  const SEED = Number(process.env.STRESS_SEED ?? 20_251_122);

  test(`${CONNECTIONS} connections, ${CALLS} run(), spawn(), noop(), abort and close calls in random order: every promise settles, nothing is mixed up, threads and descriptors come back`, async () => {
    await lib.remctl(settings.host, ['test', 'test'], where);
    await warmThreadpool();
    await sleep(100);
    gc();
    const baseline = { threads: threadCount(), fds: fdCount() };
    const next = random(SEED);
    const pick = <T>(items: readonly T[]) => items[Math.floor(next() * items.length)]!;

    const connections = await Promise.all(Array.from({ length: CONNECTIONS }, () => Remctl.connect(settings.host, where)));
    const outcomes = new Map<string, number>();
    const tally = (what: string) => outcomes.set(what, (outcomes.get(what) ?? 0) + 1);
    // An expected failure: the connection was closed or aborted by an earlier call.
    const closedUnder = (error: unknown) => error instanceof RemctlNotOpenedError;

    const calls: Array<Promise<void>> = [];
    const pending = new Set<number>();
    for (let i = 0; i < CALLS; i++) {
      const connection = pick(connections);
      const kind = pick(['run', 'run', 'run', 'spawn', 'spawn', 'noop', 'abort run', 'abort spawn', 'close', 'open', 'open'] as const);
      const id = `call ${i}`;
      const call = (async () => {
        try {
          switch (kind) {
            case 'run': {
              const { stdout } = await connection.run(['test', 'echo', id], { encoding: 'utf8' });
              expect(stdout).toBe(`${id}\n`);
              break;
            }
            case 'spawn': {
              const child = connection.spawn(['test', 'echo', id]);
              const chunks: Buffer[] = [];
              child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
              child.stderr.resume();
              expect(await child.status).toBe(0);
              expect(Buffer.concat(chunks).toString()).toBe(`${id}\n`);
              break;
            }
            case 'noop':
              await connection.noop();
              break;
            case 'abort run': {
              const controller = new AbortController();
              const running = connection.run(['test', 'sleep', '1'], { signal: controller.signal });
              setTimeout(() => controller.abort(), Math.floor(next() * 20));
              await aborted(running, (error) => error === controller.signal.reason);
              tally('abort run: aborted');
              return;
            }
            case 'abort spawn': {
              const child = connection.spawn(['test', 'sleep', '1']);
              child.stdout.resume();
              child.stderr.resume();
              setTimeout(() => child.abort(), Math.floor(next() * 20));
              await aborted(child.status, (error) => (error as Error)?.name === 'AbortError');
              tally('abort spawn: aborted');
              return;
            }
            case 'close':
              await connection.close();
              break;
            case 'open':
              await connection.open(settings.host, where);
              break;
          }
          tally(`${kind}: ok`);
        } catch (error) {
          // What may fail here fails because another call closed this connection, or closed
          // and reopened it under this one: nothing else.
          if (closedUnder(error)) tally(`${kind}: closed under it`);
          else if (error instanceof RemctlError && !(error instanceof lib.RemctlProtocolError)) tally(`${kind}: ${error.message}`);
          else throw error;
        }
      })();
      pending.add(i);
      calls.push(call.finally(() => pending.delete(i)));
      if (next() < 0.3) await sleep(Math.floor(next() * 3));
    }

    const deadline = sleep(60_000).then(() => 'deadline');
    const settled = await Promise.race([Promise.allSettled(calls), deadline]);
    expect(settled === 'deadline' ? [...pending].slice(0, 20) : [], 'calls that never settled').toStrictEqual([]);
    const failures = (settled as PromiseSettledResult<void>[]).flatMap((result, i) => (result.status === 'rejected' ? [`call ${i}: ${result.reason}`] : []));
    expect(failures.slice(0, 10)).toStrictEqual([]);
    console.info(`stress outcomes (seed ${SEED}): ${JSON.stringify(Object.fromEntries([...outcomes].sort()))}`);

    await Promise.all(connections.map((connection) => connection.close()));
    const deadlineAt = Date.now() + 5000;
    let now = { threads: threadCount(), fds: fdCount() };
    while ((now.threads !== baseline.threads || now.fds !== baseline.fds) && Date.now() < deadlineAt) {
      await sleep(20);
      gc();
      now = { threads: threadCount(), fds: fdCount() };
    }
    expect(now).toStrictEqual(baseline);
  }, 120_000);
});
