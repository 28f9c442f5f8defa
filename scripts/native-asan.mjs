// `npm run test:native-asan`: the addon built with AddressSanitizer and UndefinedBehaviorSanitizer
// (float-cast-overflow too, which -fsanitize=undefined leaves out in GCC) into build-asan/, so the
// normal build in build/ is untouched, then:
//
// 1. the _remctl, connection, stream and fuzz test files run against it (vitest, the realm of
//    test/global-setup.mjs), to catch invalid reads and writes and undefined behaviour;
// 2. scripts/asan/leak-driver.mjs runs every path of the addon in worker_threads under
//    LeakSanitizer, and exits normally so that the leak check runs.
//
// Node itself is not built with ASan: libasan is preloaded (LD_PRELOAD) into the test workers
// and the driver only, never into the realm's daemons. A sanitizer report counts against us
// when a frame of its stack is in our code (native/*.cc, remctl.node); the rest (Node's own
// allocations at exit, say) is listed but not failed on. Exits 1 on any report of ours, or when
// the sanitized addon did not run at all. The test results are printed alongside but are not
// the verdict: under ASan some tests fail for ASan's sake (a bound on RSS, with freed memory
// held in ASan's quarantine), and the fuzz file's tests of known library bugs fail anyway.
import { spawnSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRealm } from '../test/realm.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const work = join(root, 'build-asan');
const src = join(work, 'src');
const pkg = join(work, 'pkg');
const logs = join(work, 'logs');
const SANITIZERS = '-fsanitize=address,undefined,float-cast-overflow';
const TEST_FILES = ['test/_remctl.test.ts', 'test/connection.test.ts', 'test/stream.test.ts', 'test/fuzz.test.ts'];

function run(command, args, options = {}) {
  console.log(`asan: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { stdio: 'inherit', ...options });
  if (result.status !== 0) {
    console.error(`asan: ${command} failed (${result.error?.message ?? `exit ${result.status}`})`);
    process.exit(1);
  }
}

/** libasan as GCC links it, to preload into Node (which is not built with it). */
function findLibasan() {
  const result = spawnSync('gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' });
  const path = result.stdout?.trim();
  if (result.status !== 0 || !path || !path.startsWith('/') || !existsSync(path)) {
    console.error('asan: cannot find libasan: install GCC with its sanitizers (Debian: apt-get install g++, which brings libasan8)');
    process.exit(1);
  }
  return path;
}

// 1. The build: a copy of the sources with the sanitizers added to binding.gyp, built with
// debug information and without optimisation, for exact stacks.
function build() {
  rmSync(src, { recursive: true, force: true });
  mkdirSync(join(src, 'scripts'), { recursive: true });
  cpSync(join(root, 'native'), join(src, 'native'), { recursive: true });
  cpSync(join(root, 'scripts', 'libremctl.mjs'), join(src, 'scripts', 'libremctl.mjs'));
  const gyp = JSON.parse(readFileSync(join(root, 'binding.gyp'), 'utf8'));
  const target = gyp.targets[0];
  const flags = [SANITIZERS, '-fno-omit-frame-pointer', '-fno-sanitize-recover=address', '-g'];
  target.cflags = [...(target.cflags ?? []), ...flags];
  target.cflags_cc = [...(target.cflags_cc ?? []), ...flags];
  // Node unloads an addon when the last environment that loaded it (a worker's, say) ends;
  // LeakSanitizer reports at exit, when the frames of an unloaded library no longer resolve.
  target.ldflags = [...(target.ldflags ?? []), SANITIZERS, '-Wl,-z,nodelete'];
  writeFileSync(join(src, 'binding.gyp'), JSON.stringify(gyp, null, 2));
  // Run by npm, node-gyp finds Node's headers through npm's configuration; run by hand, the
  // headers of a distribution's Node are in /usr/include/node.
  const nodedir = process.env.npm_config_nodedir ?? (existsSync('/usr/include/node/node.h') ? '/usr' : undefined);
  const nodeGyp = join(root, 'node_modules', '.bin', 'node-gyp');
  run(nodeGyp, ['rebuild', '--debug', ...(nodedir ? [`--nodedir=${nodedir}`] : [])], { cwd: src });

  // The package as the tests load it: dist/ and the sanitized addon where dist/addon.js looks.
  rmSync(pkg, { recursive: true, force: true });
  mkdirSync(join(pkg, 'build', 'Release'), { recursive: true });
  cpSync(join(root, 'dist'), join(pkg, 'dist'), { recursive: true });
  cpSync(join(root, 'lib'), join(pkg, 'lib'), { recursive: true }); // what dist's source maps point to
  cpSync(join(root, 'package.json'), join(pkg, 'package.json'));
  cpSync(join(src, 'build', 'Debug', 'remctl.node'), join(pkg, 'build', 'Release', 'remctl.node'));
}

function sanitizerEnvironment(libasan, { leaks }) {
  return {
    LD_PRELOAD: libasan,
    // halt_on_error: an invalid access ends the process, and its report is in the log. The
    // slow, exact unwinding of every allocation is for the leak driver's stacks only: the tests
    // start Node processes of their own, which it would slow past their time limits.
    ASAN_OPTIONS: [
      `detect_leaks=${leaks ? 1 : 0}`,
      `log_path=${join(logs, 'asan')}`,
      'halt_on_error=1',
      'detect_odr_violation=0',
      ...(leaks ? ['fast_unwind_on_malloc=0', 'malloc_context_size=30'] : []),
    ].join(':'),
    LSAN_OPTIONS: [`suppressions=${join(root, 'scripts', 'asan', 'lsan.supp')}`, 'print_suppressions=1', 'report_objects=0', 'exitcode=0'].join(':'),
    UBSAN_OPTIONS: ['print_stacktrace=1', 'halt_on_error=0', `log_path=${join(logs, 'ubsan')}`].join(':'),
  };
}

// 2. The tests, in vitest workers that preload libasan and load the staged package.
function runTests(libasan) {
  const files = TEST_FILES.filter((file) => existsSync(join(root, file)));
  const setupFile = join(work, 'asan-setup.mjs');
  writeFileSync(
    setupFile,
    `// Generated by scripts/native-asan.mjs: proves each worker runs the sanitized addon.
import { readFileSync, writeFileSync } from 'node:fs';
await import(${JSON.stringify(join(pkg, 'dist', 'index.js'))});
const maps = readFileSync('/proc/self/maps', 'utf8');
if (!maps.includes(${JSON.stringify(join(pkg, 'build', 'Release', 'remctl.node'))}) || !maps.includes('libasan')) {
  throw new Error('asan: this worker did not load the sanitized addon under libasan');
}
writeFileSync(${JSON.stringify(join(logs, 'loaded.'))} + process.pid, '');
`,
  );
  const config = join(work, 'vitest.config.mjs');
  writeFileSync(
    config,
    `// Generated by scripts/native-asan.mjs.
import { defineConfig } from 'vitest/config';
export default defineConfig({
  root: ${JSON.stringify(root)},
  resolve: { alias: [{ find: /^(?:\\.\\.\\/)+dist\\/(.*)$/, replacement: ${JSON.stringify(`${join(pkg, 'dist')}/$1`)} }] },
  test: {
    globalSetup: ['test/global-setup.mjs'],
    setupFiles: [${JSON.stringify(setupFile)}],
    include: ${JSON.stringify(files)},
    pool: 'forks',
    reporters: ['default', './test/summary-reporter.mjs'],
    // Sanitized code runs a few times slower.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    env: ${JSON.stringify(sanitizerEnvironment(libasan, { leaks: false }))},
  },
});
`,
  );
  console.log(`asan: vitest on ${files.join(', ')}`);
  // UndefinedBehaviorSanitizer writes to the standard error of the worker (its log_path is not
  // honoured next to a preloaded libasan), which vitest passes on: both streams are kept.
  const result = spawnSync(join(root, 'node_modules', '.bin', 'vitest'), ['run', '--config', config], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 256 * 1024 * 1024,
  });
  process.stdout.write(result.stdout ?? '');
  process.stderr.write(result.stderr ?? '');
  const summary = /^(\d+) passed, (\d+) failed, (\d+) skipped$/m.exec((result.stdout ?? '').replace(/\x1b\[[0-9;]*m/g, ''));
  return {
    status: result.status,
    summary: summary?.[0] ?? 'no summary line',
    passed: Number(summary?.[1] ?? 0),
    output: `${result.stdout ?? ''}\n${result.stderr ?? ''}`,
  };
}

// 3. The leak driver, against a realm of its own started here, without libasan.
async function runLeakDriver(libasan) {
  const realm = await startRealm();
  try {
    const env = {
      ...process.env,
      ...realm.env,
      ...sanitizerEnvironment(libasan, { leaks: true }),
      REMCTL_TEST_REALM: JSON.stringify(realm.settings),
      REMCTL_DIST: join(pkg, 'dist'),
    };
    console.log('asan: leak driver');
    const child = spawn(process.execPath, [join(root, 'scripts', 'asan', 'leak-driver.mjs')], { env, stdio: ['ignore', 'inherit', 'pipe'] });
    let output = '';
    child.stderr.setEncoding('utf8').on('data', (chunk) => {
      output += chunk;
      process.stderr.write(chunk);
    });
    const [code, signal] = await new Promise((resolve) => child.once('close', (...args) => resolve(args)));
    return { code, signal, output };
  } finally {
    await realm.stop();
  }
}

/** The reports in the sanitizer logs and outputs, each with its kind and whether a frame of it is ours. */
function readReports(outputs) {
  const reports = [];
  const sources = readdirSync(logs)
    .filter((file) => /^(asan|ubsan)\.\d+$/.test(file))
    .map((name) => [name, readFileSync(join(logs, name), 'utf8')])
    .concat(Object.entries(outputs));
  for (const [name, text] of sources) {
    // LeakSanitizer: one block per leak, each starting with "Direct leak" or "Indirect leak".
    const leakBlocks = text.split(/\n(?=(?:Direct|Indirect) leak of )/).filter((block) => /^(Direct|Indirect) leak of /.test(block));
    for (const block of leakBlocks) reports.push({ file: name, kind: 'leak', text: block.split('\n\n')[0] });
    // AddressSanitizer errors and UndefinedBehaviorSanitizer's runtime errors.
    for (const match of text.matchAll(/^(==\d+==ERROR: AddressSanitizer[^\n]*\n(?:.*\n)*?)(?:\n|$)/gm)) {
      reports.push({ file: name, kind: 'asan', text: match[1] });
    }
    for (const match of text.matchAll(/^([^\n]*runtime error:[^\n]*\n(?:\s+#\d+[^\n]*\n)*)/gm)) {
      reports.push({ file: name, kind: 'ubsan', text: match[1] });
    }
  }
  // A frame of no module is counted as ours: with -z nodelete it should not happen, and
  // if it does, the frame may well be ours.
  const ours = (text) => /build-asan\/src\/native\/|\/remctl\.node\b|remctl_node::|<unknown module>/.test(text);
  return reports.map((report) => ({ ...report, ours: ours(report.text) }));
}

const libasan = findLibasan();
rmSync(logs, { recursive: true, force: true });
mkdirSync(logs, { recursive: true });
build();
const tests = runTests(libasan);
const driver = await runLeakDriver(libasan);
const loaded = readdirSync(logs).filter((name) => name.startsWith('loaded.')).length;
const reports = readReports({ 'the tests\' output': tests.output, 'the leak driver\'s output': driver.output });
const ours = reports.filter((report) => report.ours);
const theirs = reports.filter((report) => !report.ours);

console.log('\n=== native-asan');
console.log(`tests: ${tests.summary} (vitest exit ${tests.status}); ${loaded} workers ran the sanitized addon`);
console.log(`leak driver: exit ${driver.code ?? driver.signal}`);
const count = (list, kind) => list.filter((report) => report.kind === kind).length;
for (const [label, list] of [
  ['in our code', ours],
  ['outside our code', theirs],
]) {
  console.log(`reports ${label}: ${count(list, 'asan')} AddressSanitizer, ${count(list, 'ubsan')} UndefinedBehaviorSanitizer, ${count(list, 'leak')} leaks`);
}
const seen = new Set();
for (const report of ours) {
  const key = report.text.replace(/0x[0-9a-f]+/g, '').replace(/==\d+==/g, '');
  if (seen.has(key)) continue;
  seen.add(key);
  console.log(`\n--- ${report.kind} in ${report.file}:\n${report.text.trim().split('\n').slice(0, 24).join('\n')}`);
}
if (theirs.length > 0) {
  const tops = new Map();
  for (const report of theirs) {
    const frame = /#\d+ 0x[0-9a-f]+ in (?!malloc|calloc|realloc|operator new|__interceptor)(\S+)/.exec(report.text)?.[1] ?? report.text.split('\n')[0];
    const key = `${report.kind}: ${frame}`;
    tops.set(key, (tops.get(key) ?? 0) + 1);
  }
  console.log(`\noutside our code, by first frame:\n${[...tops].map(([key, n]) => `  ${n} x ${key}`).join('\n')}`);
}

const failures = [];
if (loaded === 0) failures.push('no test worker loaded the sanitized addon');
if (tests.passed === 0) failures.push('no test passed: the tests did not run');
if (driver.code !== 0) failures.push(`the leak driver exited with ${driver.code ?? driver.signal}`);
if (ours.length > 0) failures.push(`${ours.length} sanitizer reports in our code`);
console.log(failures.length === 0 ? '\nnative-asan: no invalid access, no undefined behaviour and no leak in our code' : `\nnative-asan: FAILED: ${failures.join('; ')}`);
console.log(`(logs in ${logs})`);
process.exit(failures.length === 0 ? 0 : 1);
