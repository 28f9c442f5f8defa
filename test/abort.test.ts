// Cancellation is per call and final: a call aborted before its command was handed to the
// socket never runs on the server, by any road (a later fetch, a reopen, a job queued behind
// it), while the calls nobody aborted run as asked. remctld logs every command it runs
// (`COMMAND from client@REALM: test echo ...`): that log, not the promises, is the proof.

import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, test } from 'vitest';
import { Remctl, remctl, spawn, type RemctlProcess } from '../dist/index.js';
import { counts, countsSettle, settledCounts, socketInodes, socketsClosed, socketsSince } from './metrics.mjs';
import { delayingProxy } from './fault-servers.js';
import { rejection } from './probes.js';
import { realm } from './realm-context.mjs';

const settings = realm();
const { host } = settings;
const server = { port: settings.port, principal: settings.principal };

const connections = new Set<Remctl>();
async function connect(): Promise<Remctl> {
  const r = await Remctl.connect(host, server);
  connections.add(r);
  return r;
}
afterEach(async () => {
  await Promise.all([...connections].map((r) => r.close()));
  connections.clear();
});

/** The commands remctld ran whose last argument starts with marker. */
async function ranOnServer(marker: string): Promise<string[]> {
  const log = await readFile(settings.remctldLog, 'utf8');
  return log
    .split('\n')
    .map((line) => / test echo (\S+)$/.exec(line)?.[1])
    .filter((word): word is string => word !== undefined && word.startsWith(marker));
}

/** Waits until remctld has logged every one of the expected commands (it logs as it runs them). */
async function waitForLog(marker: string, expected: number): Promise<string[]> {
  const deadline = Date.now() + 10_000;
  let ran = await ranOnServer(marker);
  while (ran.length < expected && Date.now() < deadline) {
    await sleep(50);
    ran = await ranOnServer(marker);
  }
  // Anything that would still arrive late has had its chance too.
  await sleep(300);
  return ranOnServer(marker);
}

const isAbort = (error: unknown) => (error as Error)?.name === 'AbortError';

/** Settles a process: its status and what its stdout did. */
async function settleProcess(child: RemctlProcess): Promise<unknown> {
  child.stdout.resume();
  child.stderr.resume();
  return child.status.then(
    () => 'resolved',
    (error: unknown) => error,
  );
}

describe('aborted calls never reach the server', () => {
  test('200 calls aborted in the tick that made them, or after one await, never run on the server, and the calls not aborted do', async () => {
    const marker = `abort200-${process.pid}-${Date.now()}-`;
    const aborted: Array<Promise<unknown>> = [];
    const kept: Array<Promise<unknown>> = [];
    const keptWords: string[] = [];
    let n = 0;
    const word = (kind: string) => `${marker}${kind}-${n++}`;
    const keep = (kind: string) => {
      const w = word(`kept-${kind}`);
      keptWords.push(w);
      return w;
    };
    const expectAborted = (promise: Promise<unknown>) =>
      aborted.push(
        promise.then(
          () => 'resolved',
          (error: unknown) => (isAbort(error) ? 'aborted' : error),
        ),
      );

    // remctl(): 40 aborted in the same tick.
    for (let i = 0; i < 40; i++) {
      const controller = new AbortController();
      expectAborted(remctl(host, ['test', 'echo', word('oneshot')], { ...server, signal: controller.signal }));
      controller.abort();
    }
    kept.push(remctl(host, ['test', 'echo', keep('oneshot')], server));

    // spawn(): 30 aborted by signal, 10 by abort(), in the same tick.
    for (let i = 0; i < 40; i++) {
      const controller = new AbortController();
      const child = spawn(host, ['test', 'echo', word('spawn')], { ...server, signal: controller.signal });
      if (i % 4 === 0) child.abort();
      else controller.abort();
      expectAborted(child.status);
      void settleProcess(child);
    }

    // Remctl#run(), Remctl#command() and Remctl#spawn() on an open connection, each followed by a call nobody
    // aborted that must get its own output.
    const r = await connect();
    for (let i = 0; i < 20; i++) {
      const controller = new AbortController();
      expectAborted(r.run(['test', 'echo', word('run')], { signal: controller.signal }));
      controller.abort();
      const controller2 = new AbortController();
      expectAborted(r.command(['test', 'echo', word('command')], { signal: controller2.signal }));
      controller2.abort();
    }
    for (let i = 0; i < 20; i++) {
      const child = r.spawn(['test', 'echo', word('remctl-spawn')]);
      child.abort();
      expectAborted(child.status);
      void settleProcess(child);
    }
    const keptRun = keep('run');
    kept.push(r.run(['test', 'echo', keptRun], { encoding: 'utf8' }).then((result) => expect(result.stdout).toBe(`${keptRun}\n`)));

    // Calls queued behind a busy connection: a run() of test sleep 1 holds it.
    const busy = await connect();
    const busyWord = keep('busy');
    kept.push(busy.run(['test', 'echo', busyWord]));
    kept.push(busy.run(['test', 'sleep', '1']));
    for (let i = 0; i < 20; i++) {
      const controller = new AbortController();
      if (i % 2 === 0) {
        expectAborted(busy.run(['test', 'echo', word('queued-run')], { signal: controller.signal }));
      } else {
        const child = busy.spawn(['test', 'echo', word('queued-spawn')], { signal: controller.signal });
        expectAborted(child.status);
        void settleProcess(child);
      }
      controller.abort();
    }
    const queuedKept = keep('queued');
    kept.push(busy.run(['test', 'echo', queuedKept], { encoding: 'utf8' }).then((result) => expect(result.stdout).toBe(`${queuedKept}\n`)));

    // After one await of a resolved promise: a continuation of the code that made the call.
    const later: Array<() => void> = [];
    for (let i = 0; i < 40; i++) {
      const controller = new AbortController();
      const kind = i % 4;
      if (kind === 0) expectAborted(remctl(host, ['test', 'echo', word('await-oneshot')], { ...server, signal: controller.signal }));
      else if (kind === 1) {
        const child = spawn(host, ['test', 'echo', word('await-spawn')], { ...server, signal: controller.signal });
        expectAborted(child.status);
        void settleProcess(child);
      } else if (kind === 2) expectAborted(r.run(['test', 'echo', word('await-run')], { signal: controller.signal }));
      else expectAborted(r.command(['test', 'echo', word('await-command')], { signal: controller.signal }));
      later.push(() => controller.abort());
    }
    await Promise.resolve();
    for (const abort of later) abort();
    const keptAfter = keep('after');
    kept.push(r.run(['test', 'echo', keptAfter], { encoding: 'utf8' }).then((result) => expect(result.stdout).toBe(`${keptAfter}\n`)));

    const outcomes = await Promise.all(aborted);
    await Promise.all(kept);
    expect(outcomes.length).toBe(200);
    expect(outcomes.filter((outcome) => outcome !== 'aborted')).toEqual([]);

    const ran = await waitForLog(marker, keptWords.length);
    expect(ran.filter((w) => !w.includes('-kept-'))).toEqual([]);
    expect([...ran].sort()).toEqual([...keptWords].sort());
  });

  test('a call aborted from the next macrotask, while its connection is still opening, never sends its command', async () => {
    // The call is handed to a thread of ours in the turn after it was made; this abort comes
    // right after that, while the thread connects and authenticates. Only the native side can
    // keep the command back now. The server's answers come through a proxy that holds them for
    // 100 ms, so the open is still under way when the abort comes however loaded the machine
    // (an abort after the command went out may let it run: see the README).
    const slow = await delayingProxy(settings.port, 100);
    const server = { port: slow.port, principal: settings.principal };
    const marker = `abort-opening-${process.pid}-${Date.now()}-`;
    const outcomes: Array<Promise<unknown>> = [];
    const r = await Remctl.connect(host, server);
    connections.add(r);
    for (let i = 0; i < 36; i++) {
      const controller = new AbortController();
      const kind = i % 3;
      let call: Promise<unknown>;
      if (kind === 0) call = remctl(host, ['test', 'echo', `${marker}oneshot-${i}`], { ...server, signal: controller.signal });
      else if (kind === 1) {
        const child = spawn(host, ['test', 'echo', `${marker}spawn-${i}`], { ...server, signal: controller.signal });
        void settleProcess(child);
        call = child.status;
      } else {
        // An abort closes r's connection: each of these runs on a connection reopened for it.
        const first = new AbortController();
        const closing = r.run(['test', 'sleep', '1'], { signal: first.signal }).catch(() => {});
        await sleep(50);
        first.abort();
        await closing;
        call = r.run(['test', 'echo', `${marker}reopen-${i}`], { signal: controller.signal });
      }
      outcomes.push(call.then(() => 'resolved', (error: unknown) => (isAbort(error) ? 'aborted' : error)));
      // Right after the call's own turn (the thread is only starting), or one turn later (it
      // is connecting or authenticating).
      if (i % 2 === 0) setImmediate(() => controller.abort());
      else setImmediate(() => setImmediate(() => controller.abort()));
      await outcomes.at(-1);
    }
    expect((await Promise.all(outcomes)).filter((outcome) => outcome !== 'aborted')).toEqual([]);
    await sleep(500);
    expect(await ranOnServer(marker)).toEqual([]);
    // The connection is still good for a call nobody aborts.
    expect((await r.run(['test', 'echo', `${marker}x`], { encoding: 'utf8' })).stdout).toBe(`${marker}x\n`);
    await r.close();
    await slow.close();
  });

  test('a call queued behind an aborted one on the same Remctl still runs, on a reopened connection', async () => {
    const marker = `abort-behind-${process.pid}-${Date.now()}-`;
    const r = await connect();
    const controller = new AbortController();
    const first = r.run(['test', 'sleep', '2'], { signal: controller.signal });
    const second = r.run(['test', 'echo', `${marker}second`], { encoding: 'utf8' });
    const third = r.command(['test', 'echo', `${marker}third`]);
    await sleep(200);
    controller.abort();
    expect((await rejection(first)).error).toBe(controller.signal.reason);
    expect(await second).toEqual({ stdout: `${marker}second\n`, stderr: 'stderr line\n', status: 0 });
    await third;
    const tokens = [];
    for await (const token of r.outputs()) tokens.push('data' in token ? token.data.toString() : token.type);
    expect(tokens).toEqual([`${marker}third\n`, 'stderr line\n', 'status']);
    expect(await waitForLog(marker, 2)).toEqual([`${marker}second`, `${marker}third`]);
  });

  test('calls aborted at every moment of their Remctl reopening leave no socket behind once it is closed', async () => {
    // Each abort closes the connection, so the next call reopens it, and the next abort lands
    // somewhere in that open: resolving, connecting, between the connect and the handshake, in
    // the handshake. Wherever it lands, every socket the open made is closed.
    const before = socketInodes();
    const r = await connect();
    const spin = (turns: number, then: () => void): unknown => (turns === 0 ? then() : setImmediate(() => spin(turns - 1, then)));
    for (let round = 0; round < 200; round++) {
      const calls: Array<Promise<unknown>> = [];
      for (let i = 0; i < 50; i++) {
        const controller = new AbortController();
        calls.push(r.run(['test', 'test'], { signal: controller.signal }).catch(() => {}));
        const when = (round * 50 + i) % 12;
        if (when < 6) spin(when, () => controller.abort());
        else setTimeout(() => controller.abort(), when - 6);
      }
      await Promise.all(calls);
    }
    await r.close();
    connections.delete(r);
    expect(await socketsClosed(socketsSince(before))).toStrictEqual([]);
  });

  test('1 000 aborted calls leave the thread and descriptor counts where they were', async () => {
    const before = await settledCounts();
    const r = await connect();
    const calls: Array<Promise<unknown>> = [];
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 100; i++) {
        const controller = new AbortController();
        const kind = i % 4;
        if (kind === 0) calls.push(remctl(host, ['test', 'test'], { ...server, signal: controller.signal }).catch(() => {}));
        else if (kind === 1) {
          const child = spawn(host, ['test', 'test'], { ...server, signal: controller.signal });
          calls.push(settleProcess(child));
        } else if (kind === 2) calls.push(r.run(['test', 'test'], { signal: controller.signal }).catch(() => {}));
        else calls.push(r.noop({ signal: controller.signal }).catch(() => {}));
        // Half in the same tick, half once the call is on its way.
        if (i % 2 === 0) controller.abort();
        else setTimeout(() => controller.abort(), i % 7);
      }
      await Promise.all(calls.splice(0));
    }
    await r.close();
    connections.delete(r);
    expect(await countsSettle(before, 15_000)).toStrictEqual(before);
    const after = counts();
    console.info(`1 000 aborted calls: threads ${before.threads} -> ${after.threads}, fds ${before.fds} -> ${after.fds}`);
  });
});
