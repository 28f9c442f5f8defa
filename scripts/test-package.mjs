// The package as a user gets it: `npm pack`, then `npm install` of the tarball into a fresh
// project outside the repository, where the addon builds, and from there real commands against a
// throwaway realm: from ESM, from CommonJS (Node's require(esm)) and through `npx remctl`, on
// Node.js 20, 22 and 24; a refusal on Node.js 18; and TypeScript consumers compiled against the
// .d.ts with moduleResolution nodenext and bundler. Plain node, no dependencies.
//
//   node scripts/test-package.mjs     (npm run test:package; KEEP=1 keeps the temporary project)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRealm } from '../test/realm.mjs';
import { nodeBinary } from './node-versions.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SUPPORTED = '^20.19.0 || >=22.12.0';
const work = mkdtempSync(join(tmpdir(), 'remctl-package-'));
const consumer = join(work, 'consumer');
let passed = 0;

/** Runs one check, prints its outcome and time; the first failure ends the run. */
async function check(name, fn) {
  const start = performance.now();
  try {
    await fn();
  } catch (error) {
    console.log(`  ✗ ${name}`);
    throw error;
  }
  passed++;
  console.log(`  ✓ ${name} (${((performance.now() - start) / 1000).toFixed(1)} s)`);
}

/** Runs a program to completion; its output as text. */
function run(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options });
  if (result.error) throw result.error;
  return result;
}

/** What npm itself says on stderr (this machine's ~/.npmrc draws a warning) is not the program's. */
function withoutNpmNotices(stderr) {
  return stderr
    .split('\n')
    .filter((line) => !/^npm (warn|notice)/.test(line))
    .join('\n');
}

function assertRan(result, what) {
  assert.equal(result.status, 0, `${what} exited with ${result.status ?? result.signal}:\n${result.stdout}\n${result.stderr}`);
}

/** Exactly what a user needs: the compiled library, the addon's sources and build files, the docs. */
function expectedFiles() {
  const modules = readdirSync(join(root, 'lib'))
    .filter((name) => name.endsWith('.ts') && !name.endsWith('.d.ts'))
    .map((name) => name.slice(0, -'.ts'.length));
  const gypSources = [...readFileSync(join(root, 'binding.gyp'), 'utf8').matchAll(/"(native\/[^"]+\.cc)"/g)].map((match) => match[1]);
  const headers = readdirSync(join(root, 'native'))
    .filter((name) => name.endsWith('.h'))
    .map((name) => `native/${name}`);
  return [
    'README.md',
    'package.json',
    ...(existsSync(join(root, 'LICENSE')) ? ['LICENSE'] : []),
    'binding.gyp',
    'scripts/install.mjs',
    'scripts/libremctl.mjs',
    ...gypSources,
    ...headers,
    ...modules.flatMap((name) => [`dist/${name}.js`, `dist/${name}.d.ts`]),
  ].sort();
}

/** Where npm's node-gyp finds Node's headers: npm's nodedir, else this Node's own prefix. */
function nodedirEnv() {
  const configured = run('npm', ['config', 'get', 'nodedir'], { cwd: work }).stdout.trim();
  if (configured && configured !== 'undefined' && configured !== 'null') return {};
  const prefix = join(dirname(process.execPath), '..');
  assert.ok(existsSync(join(prefix, 'include', 'node', 'node_api.h')), `Node's headers are not in ${prefix}/include/node and npm has no nodedir: node-gyp would download them`);
  return { npm_config_nodedir: prefix };
}

const ESM_CONSUMER = `import { remctl } from 'remctl';
const [host, port, principal, word] = process.argv.slice(2);
const result = await remctl(host, ['test', 'echo', word], { port: Number(port), principal, encoding: 'utf8' });
console.log(JSON.stringify({ node: process.versions.node, ...result }));
`;

const CJS_CONSUMER = `const { remctl, remctlSync, Remctl } = require('remctl');
const [host, port, principal, word] = process.argv.slice(2);
if (typeof Remctl !== 'function') throw new Error('require("remctl") gave no Remctl class');
const sync = remctlSync(host, ['test', 'echo', word], { port: Number(port), principal, encoding: 'utf8' });
remctl(host, ['test', 'echo', word], { port: Number(port), principal, encoding: 'utf8' }).then((result) => {
  if (JSON.stringify(result) !== JSON.stringify(sync)) throw new Error('remctl() and remctlSync() disagree');
  console.log(JSON.stringify({ node: process.versions.node, ...result }));
});
`;

// What a strict TypeScript consumer writes; it is compiled, not run. No lib beyond the target's
// defaults and @types/node: the .d.ts must not need more.
const TS_CONSUMER = `import { remctl, remctlSync, spawn, Remctl, RemctlProtocolError, ERROR_ACCESS, _remctl, type RemctlOutput, type RemctlResult } from 'remctl';

export async function main(host: string): Promise<number> {
  const text: RemctlResult<string> = await remctl(host, ['test', 'echo', 'x'], { encoding: 'utf8', idleTimeout: 5000 });
  const bytes: Buffer = (await remctl(host, ['test'])).stdout;
  const sync: string = remctlSync(host, ['test'], { encoding: 'utf8' }).stdout;
  // @ts-expect-error: a misspelled option does not compile
  await remctl(host, ['test'], { tiemout: 5 });
  const r = await Remctl.connect(host, { port: 4373 });
  try {
    await r.command(['test', 'big', '100']);
    for await (const token of r.outputs()) {
      const kind: RemctlOutput['type'] = token.type;
      if (token.type === 'output') bytes.compare(token.data);
      else if (token.type === 'error') console.error(token.error, kind);
    }
  } catch (error) {
    if (error instanceof RemctlProtocolError && error.errorCode === ERROR_ACCESS) return error.code.length;
    throw error;
  } finally {
    await r.close();
  }
  const child = spawn(host, ['test', 'lines', '3']);
  child.stdout.pipe(process.stdout);
  const handle = _remctl.remctl_new();
  const opened: boolean = await _remctl.remctl_open(handle, host, 0, null);
  await _remctl.remctl_close(handle);
  return (await child.status) + text.status + sync.length + Number(opened);
}
`;

const TS_BASE = {
  strict: true,
  target: 'ES2022',
  noEmit: true,
  skipLibCheck: false,
  types: ['node'],
};

function writeConsumerFiles() {
  writeFileSync(join(consumer, 'esm.mjs'), ESM_CONSUMER);
  writeFileSync(join(consumer, 'cjs.cjs'), CJS_CONSUMER);
  writeFileSync(join(consumer, 'consumer.mts'), TS_CONSUMER);
  writeFileSync(join(consumer, 'consumer.cts'), TS_CONSUMER.replace(/^export async function main/m, 'async function main').concat('module.exports = { main };\n'));
  writeFileSync(join(consumer, 'consumer.ts'), TS_CONSUMER);
  const tsconfig = (compilerOptions, files) => JSON.stringify({ compilerOptions: { ...TS_BASE, ...compilerOptions }, files }, null, 2);
  writeFileSync(join(consumer, 'tsconfig.nodenext.json'), tsconfig({ module: 'nodenext', moduleResolution: 'nodenext' }, ['consumer.mts', 'consumer.cts']));
  writeFileSync(join(consumer, 'tsconfig.bundler.json'), tsconfig({ module: 'preserve', moduleResolution: 'bundler' }, ['consumer.ts']));
}

async function main() {
  console.log(`test-package: in ${work}`);
  const nodes = [
    ['20', process.execPath],
    ['22', nodeBinary(22)],
    ['24', nodeBinary(24)],
  ];
  const unsupportedNode = nodeBinary(18);
  let tarball;
  let packed;

  await check('npm pack (prepack compiles lib/) packs exactly what a user needs', () => {
    const result = run('npm', ['pack', '--json', '--pack-destination', work], { cwd: root });
    assertRan(result, 'npm pack');
    [packed] = JSON.parse(result.stdout);
    tarball = join(work, packed.filename);
    const files = packed.files.map((file) => file.path).sort();
    assert.deepEqual(files, expectedFiles());
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    for (const entry of [pkg.main, pkg.types, pkg.exports['.'].types, pkg.exports['.'].default, pkg.bin.remctl]) {
      assert.ok(files.includes(entry.replace(/^\.\//, '')), `package.json names ${entry}, which is not in the tarball`);
    }
    console.log(`    ${packed.filename}: ${packed.files.length} files, ${packed.size} bytes packed, ${packed.unpackedSize} unpacked`);
    for (const file of files) console.log(`      ${file}`);
  });

  await check("npm install of the tarball builds the addon with npm's node-gyp from the machine's Node headers, downloading nothing", () => {
    mkdirSync(consumer);
    // npm 11 asks projects to approve dependencies' install scripts; this is how a user does.
    const manifest = { name: 'remctl-consumer', private: true, allowScripts: { [`file:${tarball}`]: true } };
    writeFileSync(join(consumer, 'package.json'), JSON.stringify(manifest, null, 2));
    const devdir = join(work, 'node-gyp-devdir');
    const versionOf = (name) => JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version;
    const result = run(
      'npm',
      ['install', '--foreground-scripts', '--no-audit', '--no-fund', '--prefer-offline', tarball, `typescript@${versionOf('typescript')}`, `@types/node@${versionOf('@types/node')}`],
      { cwd: consumer, env: { ...process.env, ...nodedirEnv(), npm_config_devdir: devdir } },
    );
    writeFileSync(join(work, 'install.log'), `${result.stdout}\n${result.stderr}`);
    assertRan(result, 'npm install');
    const log = `${result.stdout}\n${result.stderr}`;
    assert.ok(existsSync(join(consumer, 'node_modules', 'remctl', 'build', 'Release', 'remctl.node')), 'the addon was not built');
    assert.match(log, /gyp info using node-gyp@/);
    assert.match(log, /node_modules\/npm\/node_modules\/node-gyp\//, "node-gyp was not npm's own");
    assert.ok(!existsSync(join(consumer, 'node_modules', '.bin', 'node-gyp')), 'the consumer has a node-gyp of its own');
    assert.doesNotMatch(log, /gyp http|download/i);
    assert.ok(!existsSync(devdir) || readdirSync(devdir).length === 0, `node-gyp put headers in ${devdir}`);
    assert.doesNotMatch(log, /install-scripts/);
    assert.equal(existsSync(join(consumer, 'node_modules', 'remctl', 'test')), false);
  });

  writeConsumerFiles();
  const realm = await startRealm();
  try {
    const env = { ...process.env, ...realm.env };
    const target = [realm.host, String(realm.port), realm.principal];
    for (const [major, node] of nodes) {
      const pathEnv = { ...env, PATH: `${dirname(node)}${delimiter}${env.PATH}` };
      const expectEcho = (result, what, word) => {
        assertRan(result, what);
        assert.equal(withoutNpmNotices(result.stderr), '', `${what} wrote to stderr`);
        const { node: ranOn, ...output } = JSON.parse(result.stdout);
        assert.match(ranOn, new RegExp(`^${major}\\.`));
        assert.deepEqual(output, { stdout: `${word}\n`, stderr: 'stderr line\n', status: 0 });
      };
      await check(`Node.js ${major}: import { remctl } from 'remctl' runs a command`, () => {
        expectEcho(run(node, ['esm.mjs', ...target, 'esm'], { cwd: consumer, env }), 'esm.mjs', 'esm');
      });
      await check(`Node.js ${major}: require('remctl') runs a command, through require(esm)`, () => {
        expectEcho(run(node, ['cjs.cjs', ...target, 'cjs'], { cwd: consumer, env }), 'cjs.cjs', 'cjs');
      });
      await check(`Node.js ${major}: npx remctl runs a command`, () => {
        const args = ['--no-install', 'remctl', '-p', realm.port, '-s', realm.principal, realm.host, 'test', 'echo', 'cli'].map(String);
        const result = run('npx', args, { cwd: consumer, env: pathEnv });
        assertRan(result, 'npx remctl');
        assert.equal(result.stdout, 'cli\n');
        assert.equal(withoutNpmNotices(result.stderr), 'stderr line\n');
        const version = run('npx', ['--no-install', '-c', 'node --version'], { cwd: consumer, env: pathEnv }).stdout.trim();
        assert.match(version, new RegExp(`^v${major}\\.`), 'npx ran another Node.js');
      });
    }

    await check('Node.js 18: importing remctl fails with the supported versions', () => {
      const version = run(unsupportedNode, ['--version']).stdout.trim().slice(1);
      const result = run(unsupportedNode, ['esm.mjs', ...target, 'old'], { cwd: consumer, env });
      assert.equal(result.status, 1);
      assert.match(result.stderr, new RegExp(`^Error: remctl: Node\\.js ${version.replaceAll('.', '\\.')} is not supported; use Node\\.js \\^20\\.19\\.0 \\|\\| >=22\\.12\\.0$`, 'm'));
      assert.ok(result.stderr.includes(SUPPORTED));
    });
  } finally {
    await realm.stop();
  }

  for (const [resolution, config] of [
    ['nodenext, an ESM and a CommonJS file', 'tsconfig.nodenext.json'],
    ['bundler', 'tsconfig.bundler.json'],
  ]) {
    await check(`TypeScript (strict, moduleResolution ${resolution}) compiles against the .d.ts`, () => {
      const result = run(process.execPath, [join('node_modules', 'typescript', 'bin', 'tsc'), '-p', config], { cwd: consumer });
      assert.equal(result.status, 0, `tsc -p ${config}:\n${result.stdout}${result.stderr}`);
    });
  }
}

const start = performance.now();
try {
  await main();
  console.log(`test-package: done in ${((performance.now() - start) / 1000).toFixed(1)} s`);
  console.log(`\n${passed} passed, 0 failed`);
  if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
} catch (error) {
  console.error(error);
  console.log(`test-package: the project is kept in ${work}`);
  console.log(`\n${passed} passed, 1 failed`);
  process.exitCode = 1;
}
