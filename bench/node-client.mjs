// The workloads of bench/run.mjs through our library, one per process so
// that memory baselines are clean and nothing of one workload (JIT state,
// garbage, threads) leaks into the next. The counterpart of
// bench/c/reference.c: same workloads, same measurements, one JSON object
// on standard output.
//
// usage: node bench/node-client.mjs '{"mode":"session","host":...}'
import { once } from 'node:events';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Remctl, RemctlPool, _remctl, remctl, spawn } from '../dist/index.js';
import { addon } from '../dist/addon.js';

/**
 * @typedef {object} Job
 * @property {string} mode
 * @property {string} host
 * @property {number} port
 * @property {string} principal
 * @property {string[]} command
 * @property {number} [count]
 * @property {number} [warmup]
 * @property {number} [extraArgs] arguments appended to the command, each of extraSize bytes
 * @property {number} [extraSize]
 * @property {number} [calls] concurrent calls, for fanout and eventloop
 * @property {string} [file] the small file that eventloop reads
 * @property {number} [idleMs] how long eventloop measures the idle process
 * @property {number} [connections] idle connections held open, for scale
 */

const job = /** @type {Job} */ (JSON.parse(process.argv[2]));
const target = { port: job.port, principal: job.principal };
const command = [...(job.command ?? []), ...Array.from({ length: job.extraArgs ?? 0 }, () => 'x'.repeat(job.extraSize ?? 0))];

const cpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

/** Samples latencies of `count` calls of `once` after `warmup` unmeasured ones. */
async function timed(once) {
  for (let i = 0; i < (job.warmup ?? 0); i++) await once();
  const latenciesMs = new Array(job.count);
  const cpuStart = cpuMs();
  for (let i = 0; i < job.count; i++) {
    const started = performance.now();
    await once();
    latenciesMs[i] = performance.now() - started;
  }
  return { latenciesMs, cpuPerCallMs: (cpuMs() - cpuStart) / job.count };
}

function statusKiB(field) {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Peak resident set above the one at the start, as reference.c measures it. */
async function withMemory(body) {
  let resettable = true;
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    resettable = false;
  }
  const start = statusKiB('VmRSS');
  const maxrssStart = process.resourceUsage().maxRSS;
  const cpuStart = cpuMs();
  const started = performance.now();
  const bytes = await body();
  const ms = performance.now() - started;
  const cpu = cpuMs() - cpuStart;
  const peak = resettable ? statusKiB('VmHWM') : undefined;
  const maxrssGrowthKiB = process.resourceUsage().maxRSS - maxrssStart;
  const rssGrowthKiB = peak !== undefined && start !== undefined ? peak - start : maxrssGrowthKiB;
  return { bytes, ms, cpuMs: cpu, rssGrowthKiB, rssMethod: peak !== undefined ? 'VmHWM after clear_refs' : 'ru_maxrss', maxrssGrowthKiB };
}

async function drain(stream) {
  let bytes = 0;
  stream.on('data', (chunk) => (bytes += chunk.length));
  await once(stream, 'end');
  return bytes;
}

async function fanout(calls, options = target) {
  const started = performance.now();
  const callMs = new Array(calls);
  const outcomes = await Promise.allSettled(
    Array.from({ length: calls }, async (_, i) => {
      const callStarted = performance.now();
      try {
        const { status } = await remctl(job.host, command, options);
        if (status !== 0) throw new Error(`exit status ${status}`);
      } finally {
        callMs[i] = performance.now() - callStarted;
      }
    }),
  );
  const wallMs = performance.now() - started;
  const errors = outcomes.filter((o) => o.status === 'rejected').map((o) => String(o.reason?.message ?? o.reason));
  return { calls, succeeded: calls - errors.length, wallMs, callMs, errors };
}

function p99(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(0.99 * sorted.length))];
}

/**
 * Event-loop delay and the latency of a small fs.promises.readFile (which
 * needs both the loop and libuv's threadpool) while `work` runs. The delay
 * histogram counts a timer's whole interval, which is taken off: what is
 * left is how late the loop was.
 */
async function loopWhile(work) {
  const resolution = 1;
  const histogram = monitorEventLoopDelay({ resolution });
  const readMs = [];
  let running = true;
  histogram.enable();
  const reader = (async () => {
    while (running) {
      const started = performance.now();
      await readFile(job.file);
      readMs.push(performance.now() - started);
    }
  })();
  const result = await work();
  running = false;
  await reader;
  histogram.disable();
  const delayP99 = histogram.percentile(99) / 1e6;
  return {
    result,
    loopDelayP99Ms: Math.max(0, delayP99 - resolution),
    loopDelayRawP99Ms: delayP99,
    loopDelayMaxMs: histogram.max / 1e6,
    loopSamples: histogram.count,
    readFileP99Ms: p99(readMs),
    readFileMedianMs: [...readMs].sort((a, b) => a - b)[readMs.length >> 1],
    readFiles: readMs.length,
  };
}

async function nativeHandle() {
  const { addon } = await import('../dist/addon.js');
  const handle = new addon.RemctlHandle();
  const failure = await handle.open({ host: job.host, port: job.port, principal: job.principal });
  if (failure !== undefined) throw new Error(failure.message);
  return handle;
}

const modes = {
  async oneshot() {
    return timed(() => remctl(job.host, command, target));
  },

  // Sequential calls on a pool, which opens one connection and reuses it:
  // what a service calling remctl many times a minute pays per call.
  async pooled() {
    const pool = new RemctlPool();
    const result = await timed(() => pool.run(job.host, command, target));
    await pool.close();
    return result;
  },

  // As fanout, through a pool of 4 connections and without open retries: the
  // pool, not retries, keeps a stock remctld's listen backlog from overflowing.
  async 'pooled-fanout'() {
    const pool = new RemctlPool({ connections: 4, openRetries: 0 });
    const result = await fanout(job.calls ?? 1, { ...target, pool });
    await pool.close();
    return result;
  },

  async session() {
    const connection = await Remctl.connect(job.host, target);
    const result = await timed(() => connection.run(command));
    await connection.close();
    return result;
  },

  async 'session-raw'() {
    const r = _remctl.remctl_new();
    if (!(await _remctl.remctl_open(r, job.host, job.port, job.principal))) throw new Error(_remctl.remctl_error(r));
    const result = await timed(async () => {
      if (!(await _remctl.remctl_commandv(r, command))) throw new Error(_remctl.remctl_error(r));
      let token;
      do token = await _remctl.remctl_output(r);
      while (token?.type === 'output');
      if (token?.type !== 'status') throw new Error(`unexpected end of command: ${_remctl.remctl_error(r)}`);
    });
    await _remctl.remctl_close(r);
    return result;
  },

  async noop() {
    const connection = await Remctl.connect(job.host, target);
    const result = await timed(() => connection.noop());
    await connection.close();
    return result;
  },

  async 'noop-raw'() {
    const r = _remctl.remctl_new();
    if (!(await _remctl.remctl_open(r, job.host, job.port, job.principal))) throw new Error(_remctl.remctl_error(r));
    const result = await timed(async () => {
      if (!(await _remctl.remctl_noop(r))) throw new Error(_remctl.remctl_error(r));
    });
    await _remctl.remctl_close(r);
    return result;
  },

  // Diagnostics, not in the table: the native handle alone, without the
  // JavaScript layer above it, to tell the two apart when profiling.
  async 'session-native'() {
    const handle = await nativeHandle();
    const result = await timed(() => handle.run(command, 0));
    await handle.close();
    return result;
  },

  async 'noop-native'() {
    const handle = await nativeHandle();
    const result = await timed(() => handle.noop());
    await handle.close();
    return result;
  },

  async stream() {
    return withMemory(async () => {
      const child = spawn(job.host, command, target);
      const [bytes] = await Promise.all([drain(child.stdout), drain(child.stderr), child.status]);
      return bytes;
    });
  },

  async tokens() {
    let tokens = 0;
    const result = await withMemory(async () => {
      const connection = await Remctl.connect(job.host, target);
      await connection.command(command);
      let bytes = 0;
      for await (const token of connection.outputs()) {
        if (token.type === 'output') {
          bytes += token.data.length;
          tokens++;
        }
        else if (token.type === 'error') throw new Error(token.data.toString());
      }
      await connection.close();
      return bytes;
    });
    return { ...result, tokens };
  },

  async buffered() {
    return withMemory(async () => {
      const { stdout } = await remctl(job.host, command, { ...target, maxBuffer: Infinity });
      return stdout.length;
    });
  },

  // Opens job.connections connections (16 opens at a time) and keeps them
  // idle: the threads of ours (idle ones waiting for the next open
  // included), resident memory and descriptors they cost; then a noop on
  // each of them at once.
  async scale() {
    const fds = () => readdirSync('/proc/self/fd').length;
    const rssBefore = statusKiB('VmRSS');
    const fdsBefore = fds();
    const connections = [];
    for (let i = 0; i < job.connections; i += 16) {
      const width = Math.min(16, job.connections - i);
      connections.push(...(await Promise.all(Array.from({ length: width }, () => Remctl.connect(job.host, target)))));
    }
    const rssGrowthKiB = statusKiB('VmRSS') - rssBefore;
    const fdsGrowth = fds() - fdsBefore;
    const { threads } = addon.threads();
    const started = performance.now();
    const outcomes = await Promise.allSettled(connections.map((connection) => connection.noop()));
    const noopWallMs = performance.now() - started;
    const errors = [...new Set(outcomes.filter((o) => o.status === 'rejected').map((o) => String(o.reason?.message ?? o.reason)))];
    await Promise.all(connections.map((connection) => connection.close()));
    return {
      connections: connections.length,
      rssGrowthKiB,
      fds: fdsGrowth,
      threads,
      noopWallMs,
      succeeded: outcomes.filter((o) => o.status === 'fulfilled').length,
      errors,
    };
  },

  async fanout() {
    return fanout(job.calls ?? 1);
  },

  async eventloop() {
    // Warm up what the fanout uses (the addon, readFile, the JIT) first.
    await remctl(job.host, ['test', 'test'], target);
    const idle = await loopWhile(() => sleep(job.idleMs ?? 1500));
    const busy = await loopWhile(() => fanout(job.calls ?? 1));
    const { result, ...during } = busy;
    const { result: _, ...before } = idle;
    return { idle: before, during, fanout: result };
  },
};

const run = modes[/** @type {keyof typeof modes} */ (job.mode)];
if (run === undefined) {
  process.stderr.write(`node-client: unknown mode ${job.mode}\n`);
  process.exit(2);
}
process.stdout.write(`${JSON.stringify(await run())}\n`);
