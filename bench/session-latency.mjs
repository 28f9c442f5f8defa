// Per-command latency over one persistent connection against the realm's
// stock remctld (Nagle on, as Debian ships it): libremctl from C, the same
// through our library (Remctl#run and raw command/output), and Python's
// binding where python3-pyremctl is installed. Every figure comes from this
// run on this machine.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRealm } from '../test/realm.mjs';

const COUNT = Number(process.env.BENCH_COUNT ?? 200);
const here = dirname(fileURLToPath(import.meta.url));

function stats(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { median: at(0.5), p95: at(0.95) };
}

function buildC(dir) {
  const binary = join(dir, 'session');
  execFileSync('cc', ['-O2', '-o', binary, join(here, 'c', 'session.c'), '-lremctl']);
  return binary;
}

const realm = await startRealm();
const work = mkdtempSync(join(tmpdir(), 'remctl-bench-'));
try {
  Object.assign(process.env, realm.env);
  const { Remctl, _remctl } = await import('../dist/index.js');
  const rows = [];

  const c = spawnSync(buildC(work), [realm.host, String(realm.port), realm.principal, String(COUNT), 'test', 'test'], { encoding: 'utf8' });
  if (c.status !== 0) throw new Error(`C reference failed: ${c.stderr}`);
  const cLines = c.stdout.trim().split('\n');
  rows.push(['libremctl from C', stats(cLines.filter((l) => !l.startsWith('cpu')).map(Number))]);

  const connection = await Remctl.connect(realm.host, { port: realm.port, principal: realm.principal });
  const runSamples = [];
  for (let i = 0; i < COUNT; i++) {
    const started = performance.now();
    await connection.run(['test', 'test']);
    runSamples.push(performance.now() - started);
  }
  await connection.close();
  rows.push(['remctl (Node) Remctl#run', stats(runSamples)]);

  const r = _remctl.remctl_new();
  await _remctl.remctl_open(r, realm.host, realm.port, realm.principal);
  const rawSamples = [];
  for (let i = 0; i < COUNT; i++) {
    const started = performance.now();
    await _remctl.remctl_commandv(r, ['test', 'test']);
    let token;
    do token = await _remctl.remctl_output(r); while (token.type === 'output');
    rawSamples.push(performance.now() - started);
  }
  await _remctl.remctl_close(r);
  rows.push(['remctl (Node) _remctl command/output', stats(rawSamples)]);

  const python = spawnSync('python3', ['-c', `
import remctl, sys, time
r = remctl.Remctl(sys.argv[1], int(sys.argv[2]), sys.argv[3])
for i in range(int(sys.argv[4])):
    t = time.perf_counter()
    r.command([b'test', b'test'])
    while r.output()[0] == 'output':
        pass
    print((time.perf_counter() - t) * 1000)
`, realm.host, String(realm.port), realm.principal, String(Math.min(COUNT, 50))], { encoding: 'utf8' });
  if (python.status === 0) rows.push(['python3-pyremctl', stats(python.stdout.trim().split('\n').map(Number))]);

  console.log(`session latency, ${COUNT} x "test test" on one connection, stock remctld on loopback (${new Date().toISOString()})`);
  for (const [name, { median, p95 }] of rows) {
    console.log(`  ${name.padEnd(40)} median ${median.toFixed(2).padStart(7)} ms   p95 ${p95.toFixed(2).padStart(7)} ms`);
  }
} finally {
  await realm.stop();
  rmSync(work, { recursive: true, force: true });
}
