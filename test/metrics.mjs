// What the leak tests and the soak script watch: this process's resident memory, descriptors
// and threads, sampled after a full garbage collection, and whether they level off: the slope
// of a least-squares line through the second half of the samples.

import { readdirSync, readlinkSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { pathToFileURL } from 'node:url';
import { runInNewContext } from 'node:vm';

/**
 * The garbage collector, without starting Node with --expose-gc: the flag is set at run time and
 * `gc` taken from a fresh context, where it now exists.
 * @returns {() => void}
 */
export function exposeGc() {
  if (typeof globalThis.gc === 'function') return globalThis.gc;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc');
}

// The addon whose idle threads to leave out: the one under test. scripts/native-asan.mjs names
// the sanitized build's dist/ in REMCTL_DIST for its leak driver (under vitest, an alias
// redirects ../dist/ instead).
const { addon } =
  process.env.REMCTL_DIST && !process.env.VITEST
    ? await import(pathToFileURL(`${process.env.REMCTL_DIST}/addon.js`).href)
    : await import('../dist/addon.js');

/**
 * This process's threads, less those of ours that sit idle waiting for the next call that may
 * block (an open): the addon keeps at most two of them, for a few seconds, so that a service's
 * next open need not start a thread. They are a bounded cache, not a leak; every thread a
 * connection or a call holds is counted.
 */
export const threadCount = () => readdirSync('/proc/self/task').length - addon.threads().idle;
export const fdCount = () => readdirSync('/proc/self/fd').length;

/** @returns {{ threads: number, fds: number }} */
export const counts = () => ({ threads: threadCount(), fds: fdCount() });

/**
 * The sockets this process holds, by inode: each connection's are its own, so that whether one
 * connection's sockets were closed can be told whatever other connections come and go.
 * @returns {Set<string>}
 */
export function socketInodes() {
  const inodes = new Set();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (match) inodes.add(match[1]);
    } catch {
      // Closed meanwhile, as the descriptor readdir itself used.
    }
  }
  return inodes;
}

/**
 * The sockets opened since `before` was taken with socketInodes().
 * @param {Set<string>} before
 */
export function socketsSince(before) {
  return [...socketInodes()].filter((inode) => !before.has(inode));
}

/**
 * Waits up to timeoutMs for all of these sockets to be closed; returns those still open.
 * @param {string[]} sockets
 */
export async function socketsClosed(sockets, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = socketInodes();
    const left = sockets.filter((inode) => open.has(inode));
    if (left.length === 0 || Date.now() >= deadline) return left;
    await sleep(20);
  }
}

/**
 * Starts libuv's threadpool, if nothing has yet. libuv starts all of its threads (4 by default)
 * on the first piece of work that needs one (an fs call, a DNS lookup...), whenever that comes:
 * a baseline taken before it would see them as a leak of whatever ran next. Our own calls never
 * use that pool, so once it is up every thread that comes and goes is one of ours.
 */
export async function warmThreadpool() {
  await stat('/');
}

/**
 * The counts once libuv's threadpool is up and what earlier tests left winding down is gone:
 * handles they dropped are collected (their finalizers close them), threads finishing have
 * exited, and the counts stay the same over 200 ms, or after 3 s whatever they are. A baseline
 * taken before that would count threads that are about to exit.
 */
export async function settledCounts() {
  await warmThreadpool();
  exposeGc()();
  const deadline = Date.now() + 3000;
  let last = counts();
  while (Date.now() < deadline) {
    await sleep(200);
    const now = counts();
    if (now.threads === last.threads && now.fds === last.fds) return now;
    last = now;
  }
  return last;
}

/**
 * Waits up to timeoutMs for the thread and descriptor counts to come back to `expected`.
 * @param {{ threads: number, fds: number }} expected
 */
export async function countsSettle(expected, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const now = counts();
    if (now.threads === expected.threads && now.fds === expected.fds) return now;
    await sleep(20);
  }
  return counts();
}

/**
 * @typedef {object} Sample
 * @property {number} at how many operations had run
 * @property {number} rss bytes
 * @property {number} native bytes of resident memory outside V8's heap: rss less the heap's
 *   physical size, which V8 grows and shrinks by megabytes as it sees fit
 * @property {number} heapUsed bytes of the JavaScript heap in use
 * @property {number} external bytes V8 knows of outside its heap (Buffers...)
 * @property {number} fds
 * @property {number} threads
 */

/**
 * Collects garbage (finalizers run between the rounds), waits until the thread and descriptor
 * counts are back to `baseline` (threads of finished calls end just after their promises
 * settle), and measures.
 * @param {number} at
 * @param {() => void} gc
 * @param {{ threads: number, fds: number }} [baseline]
 * @returns {Promise<Sample>}
 */
export async function sample(at, gc, baseline) {
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(5);
  }
  if (baseline) {
    const deadline = Date.now() + 2000;
    while ((threadCount() !== baseline.threads || fdCount() !== baseline.fds) && Date.now() < deadline) await sleep(5);
  }
  const { rss, heapUsed, external } = process.memoryUsage();
  const native = rss - getHeapStatistics().total_physical_size;
  return { at, rss, native, heapUsed, external, fds: fdCount(), threads: threadCount() };
}

/**
 * The slope of y over x by Theil and Sen: the median of the slopes between every two points. A
 * leak is a steady climb and moves it; a one-off step (malloc taking or giving back a few
 * megabytes at once) barely does, where it would tip a least-squares line.
 * @param {Array<[number, number]>} points
 * @returns {number}
 */
export function slope(points) {
  /** @type {number[]} */
  const slopes = [];
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      const [x1, y1] = points[i];
      const [x2, y2] = points[j];
      if (x2 !== x1) slopes.push((y2 - y1) / (x2 - x1));
    }
  }
  if (slopes.length === 0) return 0;
  slopes.sort((a, b) => a - b);
  const middle = slopes.length >> 1;
  return slopes.length % 2 === 1 ? slopes[middle] : (slopes[middle - 1] + slopes[middle]) / 2;
}

/**
 * The slope of each measure over the second half of the samples, per operation: bytes (or
 * descriptors, or threads) gained for each operation run once things had warmed up.
 * @param {Sample[]} samples
 */
export function secondHalfSlopes(samples) {
  const half = samples.slice(Math.floor(samples.length / 2));
  /** @param {'rss' | 'native' | 'heapUsed' | 'external' | 'fds' | 'threads'} key */
  const of = (key) => slope(half.map((s) => [s.at, s[key]]));
  return {
    rss: of('rss'),
    native: of('native'),
    heapUsed: of('heapUsed'),
    external: of('external'),
    fds: of('fds'),
    threads: of('threads'),
  };
}

/** @param {number} bytes */
export function mib(bytes) {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
