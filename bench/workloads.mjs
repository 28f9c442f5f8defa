// What the benchmark runs, and how each workload's results become rows of
// the table. A workload runs each of its clients once per round, in a
// process of its own: the C reference (bench/c/reference.c) and one or more
// ways of doing the same through our library (bench/node-client.mjs).
import { max, median, min, p95 } from './stats.mjs';

const MiB = 1024 * 1024;

/** The sizes of a full run and of a smoke run (which only checks that everything works). */
export const PLANS = {
  full: {
    rounds: 3,
    oneshot: { tuned: 200, stock: 40 },
    pooled: { tuned: 1000, stock: 1000 },
    pooledFanout: { stock: 256 },
    session: { tuned: 2000, stock: 100 },
    args: { tuned: 100, stock: 20 },
    bulkBytes: 256 * MiB,
    fanout: { tuned: [64, 256], stock: [64, 256] },
    // Run only in the first round: stock/fanout-256 has no target, and our
    // calls retry against the stock server, which takes several seconds; the
    // pooled fanout runs 256 one-second commands 4 at a time (64 s).
    onceOnly: ['stock/fanout-256', 'stock/pooled-fanout-256'],
    eventLoop: ['tuned'],
    idleMs: 1500,
    scale: 1000,
    /** A round is only started when it is expected to end within this many seconds of the start. */
    budgetSeconds: 540,
  },
  smoke: {
    rounds: 1,
    oneshot: { tuned: 20, stock: 5 },
    pooled: { tuned: 100, stock: 20 },
    pooledFanout: { stock: 64 },
    session: { tuned: 200, stock: 10 },
    args: { tuned: 10, stock: 3 },
    bulkBytes: 16 * MiB,
    fanout: { tuned: [64, 256], stock: [64] },
    onceOnly: [],
    eventLoop: ['tuned'],
    idleMs: 500,
    scale: 100,
    budgetSeconds: 120,
  },
};

/**
 * @typedef {{ client: 'c', key: string, args: string[] } | { client: 'node', key: string, job: object }} Run
 * @typedef {{ id: string, server: string, runs: Run[], rows: (results: Record<string, object[]>) => Row[], once?: boolean }} Workload
 * @typedef {object} Row
 * @property {string} workload
 * @property {string} server
 * @property {string} measure
 * @property {string} unit
 * @property {number | undefined} c the C reference's figure
 * @property {number | undefined} node our figure
 * @property {string} [cText] shown instead of the C figure
 * @property {number | undefined} ratio node / c
 * @property {[number, number]} [ratioRange] the lowest and highest ratio of a single round
 * @property {Target} [target]
 * @property {boolean} [pass]
 * @property {string[]} [notes]
 * @typedef {{ text: string, kind: 'ratio-max' | 'ratio-min' | 'max' | 'all' | 'loop', limit: number }} Target
 */

/**
 * @param {{ host: string, principal: string, ports: Record<string, number>, file: string }} realm
 * @param {typeof PLANS.full} plan
 * @returns {Workload[]}
 */
export function workloads(realm, plan) {
  const { host, principal, ports, file } = realm;
  const c = (key, mode, port, ...rest) => ({ client: 'c', key, args: [mode, host, String(port), principal, ...rest.map(String)] });
  const node = (key, mode, port, job) => ({ client: 'node', key, job: { mode, host, port, principal, ...job } });
  const list = [];

  for (const server of ['tuned', 'stock']) {
    const port = ports[server];
    const count = plan.session[server];
    const warmup = Math.min(50, Math.ceil(count / 20));
    list.push({
      id: 'session',
      server,
      runs: [
        c('c', 'session', port, count, warmup, 0, 0, 'test', 'test'),
        node('run', 'session', port, { count, warmup, command: ['test', 'test'] }),
        node('raw', 'session-raw', port, { count, warmup, command: ['test', 'test'] }),
      ],
      rows: (r) => [
        ...named('session, Remctl#run', latencyRows(r, 'run', `session: ${count} × \`test test\` on one connection, \`Remctl#run\``, server, 'command', SESSION_TARGETS[server])),
        ...named('session, _remctl', latencyRows(r, 'raw', `session: the same, \`_remctl\` command/output`, server, 'command', SESSION_TARGETS[server])),
      ],
    });

    list.push({
      id: 'noop',
      server,
      runs: [
        c('c', 'noop', port, count, warmup),
        node('noop', 'noop', port, { count, warmup }),
        node('raw', 'noop-raw', port, { count, warmup }),
      ],
      rows: (r) => [
        ...named('noop, Remctl#noop', latencyRows(r, 'noop', `noop: ${count} × \`noop\` round trips on one connection (nothing forked on the server), \`Remctl#noop\``, server, 'noop', NOOP_TARGETS[server])),
        ...named('noop, _remctl', latencyRows(r, 'raw', `noop: the same, \`_remctl.remctl_noop\``, server, 'noop', NOOP_TARGETS[server])),
      ],
    });

    const calls = plan.oneshot[server];
    const oneshotWarmup = Math.min(5, Math.ceil(calls / 10));
    list.push({
      id: 'oneshot',
      server,
      runs: [
        c('c', 'oneshot', port, calls, oneshotWarmup, 'test', 'test'),
        node('node', 'oneshot', port, { count: calls, warmup: oneshotWarmup, command: ['test', 'test'] }),
      ],
      rows: (r) => named('oneshot, remctl()', latencyRows(r, 'node', `oneshot: ${calls} × \`remctl()\` of \`test test\``, server, 'call', ONESHOT_TARGETS[server])),
    });

    const pooledCalls = plan.pooled[server];
    const pooledWarmup = Math.min(5, Math.ceil(pooledCalls / 10));
    list.push({
      id: 'pooled',
      server,
      // Against libremctl's one-shot remctl(), which is what a C service calls;
      // and on the tuned server, for reference, C itself keeping one
      // connection for the same commands (no C client pools): the most reuse
      // can save there. (On the stock server C's commands wait out Nagle.)
      runs: [
        c('c', 'oneshot', port, pooledCalls, pooledWarmup, 'test', 'test'),
        node('node', 'pooled', port, { count: pooledCalls, warmup: pooledWarmup, command: ['test', 'test'] }),
        ...(server === 'tuned' ? [c('reuse', 'session', port, pooledCalls, pooledWarmup, 0, 0, 'test', 'test')] : []),
      ],
      rows: (r) => [
        ...named('pooled, RemctlPool#run', latencyRows(r, 'node', `pooled: ${pooledCalls} sequential \`pool.run()\` of \`test test\`, against C's one-shot \`remctl()\``, server, 'call', POOLED_TARGETS[server])),
        ...(server === 'tuned'
          ? named('pooled, C on one connection', latencyRows(r, 'reuse', `pooled, for reference: C on one connection (libremctl's session) for the same commands, against its one-shot`, server, 'call'))
          : []),
      ],
    });
    const pooledFanout = plan.pooledFanout[server];
    if (pooledFanout !== undefined) {
      list.push({
        id: `pooled-fanout-${pooledFanout}`,
        server,
        once: plan.onceOnly.includes(`${server}/pooled-fanout-${pooledFanout}`),
        runs: [c('c', 'fanout', port, pooledFanout, 'test', 'sleep', '1'), node('node', 'pooled-fanout', port, { calls: pooledFanout, command: ['test', 'sleep', '1'] })],
        rows: (r) => pooledFanoutRows(r, pooledFanout, server),
      });
    }

    if (server === 'tuned') {
      const big = ['test', 'big', String(plan.bulkBytes)];
      const size = formatBytes(plan.bulkBytes);
      list.push({
        id: 'bulk-streamed',
        server,
        runs: [c('c', 'stream', port, ...big), node('spawn', 'stream', port, { command: big }), node('tokens', 'tokens', port, { command: big })],
        rows: (r) => [
          ...tokenNote(r.tokens, named('bulk streamed, spawn()', bulkRows(r, 'spawn', `bulk: \`test big\` of ${size}, streamed, \`spawn()\``, server, { kind: 'max', limit: 16, text: '≤ 16 MiB' }))),
          ...named('bulk streamed, Remctl#outputs()', bulkRows(r, 'tokens', `bulk: the same, token iteration (\`Remctl#outputs()\`)`, server, { kind: 'max', limit: 16, text: '≤ 16 MiB' })),
        ],
      });
      const bufferedLimit = (1.1 * plan.bulkBytes) / MiB;
      list.push({
        id: 'bulk-buffered',
        server,
        runs: [c('c', 'buffered', port, ...big), node('node', 'buffered', port, { command: big })],
        rows: (r) =>
          named('bulk buffered, remctl()', bulkRows(r, 'node', `bulk: \`test big\` of ${size}, buffered, \`remctl()\` with maxBuffer: Infinity`, server, {
            kind: 'max',
            limit: bufferedLimit,
            text: `≤ 1.1 × output (${bufferedLimit.toFixed(0)} MiB)`,
          })),
      });
    }

    for (const width of plan.fanout[server]) {
      list.push({
        id: `fanout-${width}`,
        server,
        once: plan.onceOnly.includes(`${server}/fanout-${width}`),
        runs: [c('c', 'fanout', port, width, 'test', 'sleep', '1'), node('node', 'fanout', port, { calls: width, command: ['test', 'sleep', '1'] })],
        rows: (r) => fanoutRows(r, width, server),
      });
    }

    if (plan.eventLoop.includes(server)) {
      const width = 256;
      list.push({
        id: 'event-loop',
        server,
        runs: [node('node', 'eventloop', port, { calls: width, file, idleMs: plan.idleMs, command: ['test', 'sleep', '1'] })],
        rows: (r) => eventLoopRows(r, width, server),
      });
    }

    if (server === 'tuned') {
      const connections = plan.scale;
      list.push({
        id: 'scale',
        server,
        runs: [c('c', 'scale', port, connections), node('node', 'scale', port, { connections })],
        rows: (r) => scaleRows(r, connections, server),
      });
    }

    const argCalls = plan.args[server];
    list.push({
      id: 'args',
      server,
      runs: [
        c('c', 'session', port, argCalls, 2, 1000, 100, 'test', 'test'),
        node('node', 'session', port, { count: argCalls, warmup: 2, command: ['test', 'test'], extraArgs: 1000, extraSize: 100 }),
      ],
      rows: (r) => {
        const row = named('args, Remctl#run', latencyRows(r, 'node', `args: ${argCalls} × \`test test\` + 1000 arguments of 100 bytes, \`Remctl#run\``, server, 'command'));
        return [row[0]];
      },
    });
  }
  return list;
}

const SESSION_TARGETS = {
  tuned: {
    median: { kind: 'ratio-max', limit: 1.02, text: '≤ 1.02× C' },
    cpu: { kind: 'ratio-max', limit: 1.3, text: '≤ 1.3× C' },
  },
  stock: { median: { kind: 'ratio-max', limit: 0.1, text: '≤ 0.1× C' } },
};
const NOOP_TARGETS = {
  tuned: {
    median: { kind: 'ratio-max', limit: 1.2, text: '≤ 1.2× C' },
    cpu: { kind: 'ratio-max', limit: 1.5, text: '≤ 1.5× C' },
  },
  stock: {},
};
const ONESHOT_TARGETS = {
  tuned: {
    median: { kind: 'ratio-max', limit: 1.05, text: '≤ 1.05× C' },
    cpu: { kind: 'ratio-max', limit: 1.3, text: '≤ 1.3× C' },
  },
  stock: {},
};

const POOLED_TARGETS = {
  tuned: { median: { kind: 'ratio-max', limit: 0.6, text: "≤ 0.6× C's one-shot" } },
  stock: { median: { kind: 'ratio-max', limit: 0.1, text: "≤ 0.1× C's one-shot" } },
};

const ok = (results) => results.filter((result) => result && !result.error);

/**
 * Median and p95 latency and client CPU per call of a client against the C reference.
 * @param {{ median?: Target, cpu?: Target }} [targets]
 */
function latencyRows(r, key, workload, server, per, targets = {}) {
  const cRounds = ok(r.c);
  const nodeRounds = ok(r[key]);
  const pooled = (rounds) => rounds.flatMap((round) => round.latenciesMs);
  const perRound = (fn, field) => {
    const pairs = r.c.map((cr, i) => [cr, r[key][i]]).filter(([a, b]) => a && !a.error && b && !b.error);
    return pairs.map(([a, b]) => (field ? b[field] / a[field] : fn(b.latenciesMs) / fn(a.latenciesMs)));
  };
  const rows = [
    row(workload, server, 'latency, median', 'ms', median(pooled(cRounds)), median(pooled(nodeRounds)), perRound(median), targets.median),
    row(workload, server, 'latency, p95', 'ms', p95(pooled(cRounds)), p95(pooled(nodeRounds)), perRound(p95)),
    row(
      workload,
      server,
      `client CPU per ${per}`,
      'ms',
      median(cRounds.map((x) => x.cpuPerCallMs)),
      median(nodeRounds.map((x) => x.cpuPerCallMs)),
      perRound(null, 'cpuPerCallMs'),
      targets.cpu,
    ),
  ];
  return rows;
}

function bulkRows(r, key, workload, server, memoryTarget) {
  const mbps = (x) => x.bytes / 1e6 / (x.ms / 1000);
  const cRounds = ok(r.c);
  const nodeRounds = ok(r[key]);
  const pairs = r.c.map((cr, i) => [cr, r[key][i]]).filter(([a, b]) => a && !a.error && b && !b.error);
  const badSize = [...cRounds, ...nodeRounds].filter((x) => x.bytes !== nodeRounds[0]?.bytes);
  const rssMiB = (rounds) => max(rounds.map((x) => x.rssGrowthKiB / 1024));
  return [
    row(workload, server, 'throughput', 'MB/s', median(cRounds.map(mbps)), median(nodeRounds.map(mbps)), pairs.map(([a, b]) => mbps(b) / mbps(a)), {
      kind: 'ratio-min',
      limit: 1.0,
      text: '≥ 1.0× C',
    }, badSize.length ? ['output sizes differ between runs'] : undefined),
    row(workload, server, 'peak RSS growth (worst round)', 'MiB', rssMiB(cRounds), rssMiB(nodeRounds), pairs.map(([a, b]) => b.rssGrowthKiB / a.rssGrowthKiB), memoryTarget),
    row(workload, server, 'client CPU', 'ms', median(cRounds.map((x) => x.cpuMs)), median(nodeRounds.map((x) => x.cpuMs)), pairs.map(([a, b]) => b.cpuMs / a.cpuMs)),
  ];
}

function fanoutRows(r, width, server) {
  const cRounds = ok(r.c);
  const nodeRounds = ok(r.node);
  const pairs = r.c.map((cr, i) => [cr, r.node[i]]).filter(([a, b]) => a && !a.error && b && !b.error);
  const workload = `fanout: ${width} concurrent \`remctl()\` of \`test sleep 1\``;

  const errors = (rounds) => [...new Set(rounds.flatMap((x) => x.errors))].slice(0, 3);
  const cErrors = errors(cRounds);
  const nodeErrors = errors(nodeRounds);
  const notes = [
    ...(cErrors.length ? [`C failures: ${cErrors.join('; ')}`] : []),
    ...(nodeErrors.length ? [`Node failures: ${nodeErrors.join('; ')}`] : []),
  ];
  return [
    row(workload, server, 'wall time, median round', 's', median(cRounds.map((x) => x.wallMs / 1000)), median(nodeRounds.map((x) => x.wallMs / 1000)), pairs.map(([a, b]) => b.wallMs / a.wallMs),
      server === 'tuned' ? { kind: 'ratio-max', limit: 1.05, text: '≤ 1.05× C' } : undefined),
    {
      ...row(workload, server, 'succeeded, worst round', `/${width}`, min(cRounds.map((x) => x.succeeded)), min(nodeRounds.map((x) => x.succeeded)), [],
        server === 'tuned' || width === 64 ? { kind: 'all', limit: width, text: `all ${width}` } : undefined, notes.length ? notes : undefined),
      ratio: undefined,
    },
  ];
}

function pooledFanoutRows(r, width, server) {
  const cRounds = ok(r.c);
  const nodeRounds = ok(r.node);
  const workload = `pooled fanout: ${width} concurrent \`pool.run()\` of \`test sleep 1\`, 4 connections, \`openRetries: 0\` (C: ${width} one-shot calls at once)`;
  const errors = [...new Set(nodeRounds.flatMap((x) => x.errors))].slice(0, 3);
  const pairs = r.c.map((cr, i) => [cr, r.node[i]]).filter(([a, b]) => a && !a.error && b && !b.error);
  return [
    row(workload, server, 'wall time, median round', 's', median(cRounds.map((x) => x.wallMs / 1000)), median(nodeRounds.map((x) => x.wallMs / 1000)), pairs.map(([a, b]) => b.wallMs / a.wallMs)),
    {
      ...row(workload, server, 'succeeded, worst round', `/${width}`, min(cRounds.map((x) => x.succeeded)), min(nodeRounds.map((x) => x.succeeded)), [],
        { kind: 'all', limit: width, text: `all ${width}` }, errors.length ? [`Node failures: ${errors.join('; ')}`] : undefined),
      ratio: undefined,
    },
  ];
}

function eventLoopRows(r, width, server) {
  const rounds = ok(r.node);
  const workload = `event loop during the ${width}-way fanout`;
  const target = server === 'tuned' ? { kind: 'loop', limit: 10, text: '≤ 2× idle, < 10 ms' } : undefined;
  const make = (measure, field) => {
    const idle = median(rounds.map((x) => x.idle[field]));
    const during = median(rounds.map((x) => x.during[field]));
    const result = row(workload, server, measure, 'ms', idle, during, rounds.map((x) => x.during[field] / x.idle[field]), target);
    result.cText = `idle: ${format(idle, 'ms')}`;
    result.ratioOf = 'idle';
    return result;
  };
  return [make('`monitorEventLoopDelay` p99', 'loopDelayP99Ms'), make('`fs.promises.readFile` p99', 'readFileP99Ms')];
}

function scaleRows(r, connections, server) {
  const cRounds = ok(r.c);
  const nodeRounds = ok(r.node);
  const pairs = r.c.map((cr, i) => [cr, r.node[i]]).filter(([a, b]) => a && !a.error && b && !b.error);
  const idle = `scale: ${connections} connections open and idle in one process`;
  const noop = `scale: a \`noop()\` on each of those ${connections} at once (C: a thread per connection)`;
  const perConnection = (rounds, field) => max(rounds.map((x) => x[field] / x.connections));
  const errors = [...new Set(nodeRounds.flatMap((x) => x.errors ?? []))].slice(0, 3);
  return [
    { ...row(idle, server, 'threads of ours, worst round', '', max(cRounds.map((x) => x.threads)), max(nodeRounds.map((x) => x.threads)), [], { kind: 'max', limit: 4, text: '≤ 4 in all' }), ratio: undefined },
    row(idle, server, 'RSS growth per connection, worst round', 'KiB', perConnection(cRounds, 'rssGrowthKiB'), perConnection(nodeRounds, 'rssGrowthKiB'), pairs.map(([a, b]) => b.rssGrowthKiB / a.rssGrowthKiB), { kind: 'max', limit: 64, text: '≤ 64 KiB' }),
    row(idle, server, 'descriptors per connection, worst round', '', perConnection(cRounds, 'fds'), perConnection(nodeRounds, 'fds'), [], { kind: 'max', limit: 2, text: '≤ 2' }),
    row(noop, server, 'wall time, median round', 'ms', median(cRounds.map((x) => x.noopWallMs)), median(nodeRounds.map((x) => x.noopWallMs)), pairs.map(([a, b]) => b.noopWallMs / a.noopWallMs), { kind: 'ratio-max', limit: 2, text: '≤ 2× C' }),
    {
      ...row(noop, server, 'succeeded, worst round', `/${connections}`, min(cRounds.map((x) => x.succeeded)), min(nodeRounds.map((x) => x.succeeded)), [], { kind: 'all', limit: connections, text: `all ${connections}` }, errors.length ? [`Node failures: ${errors.join('; ')}`] : undefined),
      ratio: undefined,
    },
  ];
}

/** Says how many tokens the output came in, which is what per-token costs scale with. */
function tokenNote(rounds, rows) {
  const done = ok(rounds);
  const counts = [...new Set(done.map((x) => x.tokens))];
  if (counts.length === 1 && counts[0] > 0 && rows[0]) {
    rows[0].notes = [...(rows[0].notes ?? []), `the output came in ${counts[0]} tokens of ${Math.round(done[0].bytes / counts[0])} bytes on average`];
  }
  return rows;
}

/** Gives rows the short name the chart shows. */
function named(name, rows) {
  for (const r of rows) r.name = name;
  return rows;
}

/** @returns {Row} */
function row(workload, server, measure, unit, c, node, ratios, target, notes) {
  const ratio = c > 0 && Number.isFinite(node) ? node / c : undefined;
  const finite = ratios.filter(Number.isFinite);
  /** @type {Row} */
  const result = { workload, server, measure, unit, c: finiteOr(c), node: finiteOr(node), ratio, ratioRange: finite.length > 1 ? [min(finite), max(finite)] : undefined };
  if (target) {
    result.target = target;
    result.pass = judge(target, result);
  }
  if (notes) result.notes = notes;
  return result;
}

const finiteOr = (value) => (Number.isFinite(value) ? value : undefined);

/** @param {Target} target @param {Row} row */
function judge(target, row) {
  const { node, ratio } = row;
  if (node === undefined) return false;
  switch (target.kind) {
    case 'ratio-max':
      return ratio !== undefined && ratio <= target.limit;
    case 'ratio-min':
      return ratio !== undefined && ratio >= target.limit;
    case 'max':
      return node <= target.limit;
    case 'all':
      return node >= target.limit;
    case 'loop':
      return ratio !== undefined && ratio <= 2 && node < target.limit;
  }
  return false;
}

/** @param {number | undefined} value @param {string} unit */
export function format(value, unit) {
  if (value === undefined || !Number.isFinite(value)) return '—';
  if (unit.startsWith('/')) return `${Math.round(value)}${unit}`;
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : Math.abs(value) >= 1 ? 2 : 3;
  return `${value.toFixed(digits)} ${unit}`;
}

function formatBytes(bytes) {
  return bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / 1024} KiB`;
}
