// Run by scripts/native-asan.mjs under AddressSanitizer with leak detection on, with the
// sanitized build staged in REMCTL_DIST and a realm in REMCTL_TEST_REALM. Every path of the
// addon runs in worker_threads, never in this main thread: when a worker ends, Node tears its
// environment down and runs every remaining finalizer, so that nothing of ours is left that
// only V8's heap (which LeakSanitizer does not scan) points to. What LeakSanitizer finds at
// exit is then either a real leak or Node's own.
//
// Worker 1 runs everything to the end and closes what it opened; it also drops handles without
// closing them, idle and with a call in flight, for the finalizers. Worker 2 is terminated with
// calls in flight, for the environment cleanup hook.
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';

const settings = JSON.parse(process.env.REMCTL_TEST_REALM);
const where = { port: settings.port, principal: settings.principal };

async function runEverything(lib, { exposeGc }, { commandOnConnection, oneShot }, closedPort) {
  const gc = exposeGc();
  const rounds = Number(process.env.LEAK_DRIVER_ROUNDS ?? 3);
  for (let i = 0; i < 10 * rounds; i++) await oneShot(lib, settings, closedPort, i);
  const connection = await lib.Remctl.connect(settings.host, where);
  for (let i = 0; i < 6 * rounds; i++) await commandOnConnection(lib, connection, i);
  // A connection closed under a pending call, and one reopened after a timeout.
  const pending = connection.run(['test', 'sleep', '1']).catch(() => {});
  await connection.close();
  await pending;
  const timed = await lib.Remctl.connect(settings.host, { ...where, idleTimeout: 1000 });
  await timed.run(['test', 'sleep', '3']).catch(() => {});
  await timed.run(['test', 'test']);
  await timed.run(['test', 'sleep', '3'], { timeout: 300 }).catch(() => {});
  await timed.run(['test', 'test']);
  await timed.close();
  // Pooled connections: reused, retired by an abort, and closed with the pool.
  const pool = new lib.RemctlPool({ connections: 2 });
  await Promise.all([0, 1, 2, 3].map(() => pool.run(settings.host, ['test', 'test'], where)));
  await pool.run(settings.host, ['test', 'sleep', '3'], { ...where, signal: AbortSignal.timeout(200) }).catch(() => {});
  await pool.run(settings.host, ['test', 'test'], where);
  await pool.close();
  // Handles dropped without a close, idle and with a call in flight: their finalizers close them.
  await (async () => {
    const idle = lib._remctl.remctl_new();
    await lib._remctl.remctl_open(idle, settings.host, settings.port, settings.principal);
    const busy = lib._remctl.remctl_new();
    await lib._remctl.remctl_open(busy, settings.host, settings.port, settings.principal);
    await lib._remctl.remctl_commandv(busy, ['test', 'sleep', '1']);
    lib._remctl.remctl_output(busy).catch(() => {});
    const dropped = new lib.Remctl();
    await dropped.open(settings.host, where);
    lib._remctl.remctl_new();
  })();
  for (let i = 0; i < 20; i++) {
    gc();
    await sleep(100);
  }
  // Bad input that reaches the native side's own checks.
  const r = lib._remctl.remctl_new();
  lib._remctl.remctl_set_timeout(r, -1);
  // A descriptor that is not open is a programmer's error: it throws, as in the tests.
  try {
    await lib._remctl.remctl_open_fd(r, 'localhost', 987_654, settings.principal);
  } catch {}
  await lib._remctl.remctl_open_addrinfo(r, null, [{ address: '127.0.0.1', port: closedPort }], settings.principal);
  await lib._remctl.remctl_close(r);
}

async function leaveInFlight(lib) {
  const connection = await lib.Remctl.connect(settings.host, where);
  connection.run(['test', 'sleep', '5']).catch(() => {});
  lib.remctl(settings.host, ['test', 'sleep', '5'], where).catch(() => {});
  lib.spawn(settings.host, ['test', 'sleep', '5'], where).stdout.resume();
  const r = lib._remctl.remctl_new();
  await lib._remctl.remctl_open(r, settings.host, settings.port, settings.principal);
  await lib._remctl.remctl_commandv(r, ['test', 'sleep', '5']);
  lib._remctl.remctl_output(r).catch(() => {});
  await sleep(200);
  parentPort.postMessage('in flight');
}

if (!isMainThread) {
  const lib = await import(pathToFileURL(`${process.env.REMCTL_DIST}/index.js`).href);
  if (workerData.mode === 'everything') {
    const metrics = await import('../../test/metrics.mjs');
    const workloads = await import('../../test/leak-workloads.mjs');
    await runEverything(lib, metrics, workloads, workerData.closedPort);
    parentPort.postMessage('done');
  } else {
    await leaveInFlight(lib);
  }
} else {
  const { freePort } = await import('../../test/realm-control.mjs');
  const closedPort = await freePort();
  const threads = () => readdirSync('/proc/self/task').length;
  const before = threads();

  const everything = new Worker(new URL(import.meta.url), { workerData: { mode: 'everything', closedPort } });
  const failed = new Promise((_, reject) => everything.once('error', reject));
  await Promise.race([new Promise((resolve) => everything.once('exit', resolve)), failed]);
  console.log('leak driver: worker 1 ran every path and ended');

  const terminated = new Worker(new URL(import.meta.url), { workerData: { mode: 'in flight' } });
  await Promise.race([new Promise((resolve) => terminated.once('message', resolve)), new Promise((_, reject) => terminated.once('error', reject))]);
  await terminated.terminate();
  console.log('leak driver: worker 2 terminated with calls in flight');

  const deadline = Date.now() + 10_000;
  while (threads() > before && Date.now() < deadline) await sleep(50);
  console.log(`leak driver: threads ${before} before, ${threads()} after`);
  process.exit(0);
}
