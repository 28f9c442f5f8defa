// npm run bench: our library against libremctl called from C, in the same
// run, against a throwaway realm. Starts the realm (its remctld is the stock
// server) and a second, tuned remctld; builds the C reference client and the
// tuned server's shim; runs every workload for both clients, alternating
// which goes first between rounds; prints the table; writes the results to
// bench/results/ and, for a full run, regenerates the README's Benchmarks
// section and bench/ratios.svg from them.
//
//   node bench/run.mjs            full run (3 rounds, under 10 minutes on 2 CPUs)
//   node bench/run.mjs --smoke    everything once, small: about 30 seconds
//   options: --rounds N, --only ID[,ID...] (workload ids, e.g. session,bulk-streamed),
//            --readme / --no-readme (default: only a full run of everything writes it)
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startRealm } from '../test/realm.mjs';
import { CHART, describeMachine, terminalTable, writeChart, writeReadme } from './report.mjs';
import { buildC, listenBacklog, startTunedRemctld } from './servers.mjs';
import { PLANS, workloads } from './workloads.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
/** No single client run may take longer: a hung connection fails its row, not the whole run. */
const RUN_TIMEOUT_MS = 120_000;

const { values: options } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    only: { type: 'string' },
    readme: { type: 'boolean' },
    'no-readme': { type: 'boolean' },
  },
});
const planName = options.smoke ? 'smoke' : 'full';
const plan = { ...PLANS[planName] };
if (options.rounds !== undefined) plan.rounds = Number(options.rounds);
if (!(Number.isInteger(plan.rounds) && plan.rounds > 0)) throw new RangeError(`--rounds must be a positive integer, got ${options.rounds}`);
const only = options.only?.split(',');
const updateReadme = options['no-readme'] ? false : (options.readme ?? (planName === 'full' && only === undefined));

const log = (text) => process.stderr.write(`${text}\n`);

/** Runs one client once; resolves to its JSON, or to { error } (the row shows it as missing). */
function runClient(run, binaries) {
  const [command, args] =
    run.client === 'c' ? [binaries.reference, run.args] : [process.execPath, [join(here, 'node-client.mjs'), JSON.stringify(run.job)]];
  return new Promise((resolve) => {
    execFile(command, args, { cwd: root, maxBuffer: 64 * 1024 * 1024, timeout: RUN_TIMEOUT_MS, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      if (error) {
        const lines = stderr.trim().split('\n');
        const reason = lines.find((line) => /^(\w*Error|reference:|node-client:)/.test(line)) ?? lines.slice(-3).join(' / ');
        resolve({ error: `${error.killed ? `killed after ${RUN_TIMEOUT_MS} ms` : `exit ${error.code}`}: ${reason}` });
        return;
      }
      try {
        resolve(JSON.parse(stdout));
      } catch {
        resolve({ error: `unreadable output: ${stdout.slice(0, 200)}` });
      }
    });
  });
}

function brief(run, result) {
  if (result.error) return `${run.key} FAILED (${result.error})`;
  if (result.latenciesMs) {
    const sorted = [...result.latenciesMs].sort((a, b) => a - b);
    return `${run.key} ${sorted[sorted.length >> 1].toFixed(2)} ms`;
  }
  if (result.bytes !== undefined) return `${run.key} ${(result.bytes / 1e6 / (result.ms / 1000)).toFixed(1)} MB/s, +${(result.rssGrowthKiB / 1024).toFixed(1)} MiB`;
  if (result.wallMs !== undefined) return `${run.key} ${result.succeeded}/${result.calls} in ${(result.wallMs / 1000).toFixed(2)} s`;
  if (result.during) return `${run.key} loop p99 ${result.idle.loopDelayP99Ms.toFixed(2)} → ${result.during.loopDelayP99Ms.toFixed(2)} ms, readFile p99 ${result.idle.readFileP99Ms.toFixed(2)} → ${result.during.readFileP99Ms.toFixed(2)} ms`;
  return run.key;
}

const loadAtStart = loadavg()[0];
if (loadAtStart > 0.5) {
  log(`bench: warning: load average ${loadAtStart.toFixed(2)} before starting: something else is running, and the figures will be noisier for it`);
}
const started = Date.now();
// Other work on the machine shows in the figures: keep the highest load average seen.
let loadPeak = loadAtStart;
const loadSampler = setInterval(() => (loadPeak = Math.max(loadPeak, loadavg()[0])), 5000);
loadSampler.unref();
const startedAt = new Date(started).toISOString();
const work = mkdtempSync(join(tmpdir(), 'remctl-bench-'));
log(`bench: ${planName} run, ${plan.rounds} round${plan.rounds > 1 ? 's' : ''}; building the C reference client and the tuned-server shim`);
const binaries = buildC(work);
const smallFile = join(work, 'small.txt');
writeFileSync(smallFile, 'x'.repeat(1024));

log('bench: starting the realm (KDC, stock remctld) and a tuned remctld');
const realm = await startRealm();
const stopOnSignal = async () => {
  await realm.stop();
  process.exit(130);
};
process.once('SIGINT', stopOnSignal);
process.once('SIGTERM', stopOnSignal);
try {
  Object.assign(process.env, realm.env);
  const tuned = await startTunedRemctld(realm, binaries.shim);
  const servers = {
    tuned: { port: tuned.port, backlog: listenBacklog(tuned.port) },
    stock: { port: realm.port, backlog: listenBacklog(realm.port) },
  };
  log(`bench: stock remctld on port ${servers.stock.port} (backlog ${servers.stock.backlog ?? '?'}), tuned on ${servers.tuned.port} (backlog ${servers.tuned.backlog ?? '?'})`);

  const list = workloads(
    { host: realm.host, principal: realm.principal, ports: { tuned: servers.tuned.port, stock: servers.stock.port }, file: smallFile },
    plan,
  ).filter((w) => only === undefined || only.includes(w.id));
  /** @type {Record<string, Record<string, object[]>>} results by workload, then client key, one entry per round */
  const raw = {};
  for (const w of list) raw[`${w.server}/${w.id}`] = Object.fromEntries(w.runs.map((r) => [r.key, []]));

  let roundsRun = 0;
  for (let round = 0; round < plan.rounds; round++) {
    const elapsed = (Date.now() - started) / 1000;
    const perRound = round === 0 ? 0 : elapsed / round;
    if (round > 0 && elapsed + perRound > plan.budgetSeconds) {
      log(`bench: stopping after ${round} of ${plan.rounds} rounds: another would end past the ${plan.budgetSeconds} s budget`);
      break;
    }
    for (const w of list) {
      if (w.once && round > 0) continue;
      // C first in even rounds, ours first in odd ones.
      const order = round % 2 === 0 ? w.runs : [...w.runs].reverse();
      const said = [];
      for (const run of order) {
        const result = await runClient(run, binaries);
        raw[`${w.server}/${w.id}`][run.key][round] = result;
        said.push(brief(run, result));
        // Let the server's exiting children and the kernel's sockets settle.
        await sleep(100);
      }
      log(`round ${round + 1}/${plan.rounds} ${w.server} ${w.id}: ${said.join(', ')}`);
    }
    roundsRun = round + 1;
  }

  const rows = list.flatMap((w) => w.rows(raw[`${w.server}/${w.id}`]));
  const results = {
    plan: { name: planName, ...plan, roundsRun },
    startedAt,
    seconds: (Date.now() - started) / 1000,
    machine: describeMachine(),
    loadAverage: { start: loadAtStart, peak: Math.max(loadPeak, loadavg()[0]), end: loadavg()[0] },
    servers,
    rows,
    raw,
  };
  const resultsDir = join(here, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `${planName}-${startedAt.replaceAll(':', '-').replace(/\..*/, '')}.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 1)}\n`);
  if (planName === 'full') writeFileSync(join(resultsDir, 'latest.json'), `${JSON.stringify(results, null, 1)}\n`);

  console.log(`\nremctl benchmarks, ${startedAt}, ${results.machine.nproc} CPUs, ${roundsRun} round(s), ${results.seconds.toFixed(0)} s\n`);
  console.log(terminalTable(results));
  const missed = rows.filter((row) => row.target && !row.pass);
  console.log(`\n${rows.filter((row) => row.target).length - missed.length} targets met, ${missed.length} missed. Results: ${relative(root, file)}`);
  if (updateReadme) {
    writeChart(results);
    writeReadme(results);
    console.log(`Wrote ${relative(root, CHART)} and the Benchmarks section of README.md.`);
  }
} finally {
  await realm.stop();
  rmSync(work, { recursive: true, force: true });
}
