// The long leak test, `npm run soak`: 100 000 commands over one connection, then 5 000 one-shot
// calls (every kind in turn, see test/leak-workloads.mjs), against a throwaway realm. Resident
// memory, descriptors and threads are sampled after a garbage collection as it goes; once past
// the first half they must level off: the slope of resident memory over the second half (by
// Theil-Sen, which a one-off step of malloc or V8 does not tip) must stay within a small bound,
// both as a whole and outside V8's heap, and descriptors and threads must not move at all.
// Prints the samples and slopes, and exits 1 if anything grows.
//
// SOAK_COMMANDS and SOAK_ONE_SHOTS change the counts; SOAK_JSON names a file for the samples.
import { writeFileSync } from 'node:fs';
import { startRealm } from '../test/realm.mjs';
import { freePort } from '../test/realm-control.mjs';
import { commandOnConnection, oneShot } from '../test/leak-workloads.mjs';
import { exposeGc, mib, sample, secondHalfSlopes } from '../test/metrics.mjs';

const COMMANDS = Number(process.env.SOAK_COMMANDS ?? 100_000);
const ONE_SHOTS = Number(process.env.SOAK_ONE_SHOTS ?? 5_000);
const SAMPLES = 80;

// Growth per operation allowed over the second half: above the drift of malloc's arenas, below
// a leaked output buffer, job or token per command, or a leaked socket, thread or handle per
// call. Resident memory as a whole gets more room than what lies outside V8's heap: V8 grows
// its heap's pages by megabytes at a time, every few tens of thousands of commands, with the
// heap in use flat all along.
const BOUNDS = {
  commands: { rss: 256, native: 64 }, // bytes per command
  'one-shot calls': { rss: 1024, native: 1024 }, // bytes per call
};

const gc = exposeGc();

/**
 * Runs `count` operations, sampling SAMPLES times, and reports.
 * @param {string} name
 * @param {number} count
 * @param {(i: number) => Promise<void>} operation
 * @param {{ threads: number, fds: number }} baseline
 */
async function phase(name, count, operation, baseline) {
  const every = Math.max(1, Math.floor(count / SAMPLES));
  const samples = [await sample(0, gc, baseline)];
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    await operation(i);
    if ((i + 1) % every === 0) samples.push(await sample(i + 1, gc, baseline));
  }
  const seconds = (performance.now() - started) / 1000;
  const slopes = secondHalfSlopes(samples);
  const first = samples[0];
  const last = samples.at(-1);
  console.log(`\n${name}: ${count} in ${seconds.toFixed(1)} s (${(count / seconds).toFixed(0)}/s)`);
  console.log('      at        rss     native   heapUsed   external  fds  threads');
  for (const s of samples.filter((_, i) => i % 8 === 0 || i === samples.length - 1)) {
    console.log(
      `${String(s.at).padStart(8)} ${mib(s.rss).padStart(10)} ${mib(s.native).padStart(10)} ${mib(s.heapUsed).padStart(10)} ` +
        `${mib(s.external).padStart(10)} ${String(s.fds).padStart(4)} ${String(s.threads).padStart(8)}`,
    );
  }
  console.log(
    `slopes over the second half, per operation: rss ${slopes.rss.toFixed(2)} B, native ${slopes.native.toFixed(2)} B, ` +
      `heapUsed ${slopes.heapUsed.toFixed(2)} B, external ${slopes.external.toFixed(2)} B, fds ${slopes.fds}, threads ${slopes.threads}`,
  );
  console.log(`rss ${mib(first.rss)} -> ${mib(last.rss)}; fds ${first.fds} -> ${last.fds}; threads ${first.threads} -> ${last.threads}`);
  return { name, count, slopes, samples, seconds, baseline };
}

const realm = await startRealm();
let failed = false;
try {
  Object.assign(process.env, realm.env);
  const lib = await import('../dist/index.js');
  const closedPort = await freePort();
  const where = { port: realm.port, principal: realm.principal };

  // One of each first, so that what libkrb5 and Node set up once for good is in the baseline.
  for (let i = 0; i < 10; i++) await oneShot(lib, realm, closedPort, i);
  const connection = await lib.Remctl.connect(realm.host, where);
  for (let i = 0; i < 60; i++) await commandOnConnection(lib, connection, i);
  const warm = await sample(0, gc);
  const baseline = { threads: warm.threads, fds: warm.fds };

  const commands = await phase('commands', COMMANDS, (i) => commandOnConnection(lib, connection, i), baseline);
  await connection.close();
  const idle = await sample(0, gc);
  const oneShotBaseline = { threads: idle.threads, fds: idle.fds };
  const oneShots = await phase('one-shot calls', ONE_SHOTS, (i) => oneShot(lib, realm, closedPort, i), oneShotBaseline);

  for (const result of [commands, oneShots]) {
    const bounds = BOUNDS[result.name];
    for (const key of ['rss', 'native']) {
      if (result.slopes[key] > bounds[key]) {
        console.log(`FAIL: ${result.name}: ${key} grows by ${result.slopes[key].toFixed(1)} B per operation over the second half (bound ${bounds[key]})`);
        failed = true;
      }
    }
    const moved = result.samples.filter((s) => s.threads !== result.baseline.threads || s.fds !== result.baseline.fds);
    if (moved.length > 0) {
      console.log(`FAIL: ${result.name}: threads or descriptors off their baseline ${JSON.stringify(result.baseline)} at ${moved.map((s) => `${s.at}: ${s.threads}/${s.fds}`).join(', ')}`);
      failed = true;
    }
  }
  if (process.env.SOAK_JSON) writeFileSync(process.env.SOAK_JSON, JSON.stringify({ commands, oneShots }, null, 1));
  console.log(failed ? '\nsoak: FAILED' : '\nsoak: everything levelled off');
} finally {
  await realm.stop();
}
process.exit(failed ? 1 : 0);
