// No shell anywhere: the library and the CLI never start a process, the addon imports no
// function that could, and arguments travel as protocol arguments, so shell syntax arrives at
// the server byte for byte (and does nothing on the way). The CLI's -d output shows no
// argument value.

import { execFileSync, spawn as spawnProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Remctl, _remctl, remctl, remctlSync, spawn } from '../dist/index.js';
import { realm } from './realm-context.mjs';

const settings = realm();
const where = { port: settings.port, principal: settings.principal };
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist', 'cli.js');

// Where a shell, had there been one, would leave its mark.
let canary: string;
let marker: string;
let hostile: string[];

beforeAll(() => {
  canary = mkdtempSync(join(tmpdir(), 'remctl-canary-'));
  marker = join(canary, 'pwned');
  hostile = [
    `; rm -rf ${canary}`,
    `$(touch ${marker})`,
    `\`touch ${marker}\``,
    `| touch ${marker}`,
    `&& touch ${marker} &&`,
    `\n touch ${marker}`,
    '$(id)',
    '${HOME}',
    '$PATH',
    '*',
    '~',
    "'unbalanced",
    '"unbalanced',
    '\\',
    '%s%n%x',
    '-rf',
    '--',
    '-',
    'two words',
    ' leading and trailing ',
    '> /dev/null',
    '<(id)',
  ];
});

afterAll(() => {
  rmSync(canary, { recursive: true, force: true });
});

/** What `test echo` prints for these arguments: each on a line of its own (printf '%s\n' "$@"). */
const echoed = (args: string[]) => args.map((arg) => `${arg}\n`).join('');

function expectNothingRan() {
  expect(existsSync(canary)).toBe(true);
  expect(existsSync(marker)).toBe(false);
}

/** The bare module names a compiled file imports, statically or dynamically. */
function importsOf(source: string): string[] {
  const names = new Set<string>();
  for (const pattern of [/\bfrom\s*['"]([^'"]+)['"]/g, /\bimport\s*\(\s*['"]([^'"]+)['"]/g, /\brequire\s*\(\s*['"]([^'"]+)['"]/g, /^\s*import\s*['"]([^'"]+)['"]/gm]) {
    for (const match of source.matchAll(pattern)) names.add(match[1]!);
  }
  return [...names].filter((name) => !name.startsWith('.'));
}

describe('no process is ever started', () => {
  const PROCESS_MODULES = ['child_process', 'node:child_process', 'cluster', 'node:cluster'];

  test('no file of dist/, the CLI included, imports child_process or cluster, nor evaluates code', () => {
    const files = readdirSync(join(ROOT, 'dist')).filter((name) => name.endsWith('.js'));
    expect(files).toContain('cli.js');
    const seen: Record<string, string[]> = {};
    for (const name of files) {
      const source = readFileSync(join(ROOT, 'dist', name), 'utf8');
      seen[name] = importsOf(source);
      expect(seen[name]!.filter((module) => PROCESS_MODULES.includes(module)), name).toStrictEqual([]);
      expect(source, name).not.toMatch(/\b(?:execSync|execFileSync|spawnSync|execFile|fork)\s*\(|\beval\s*\(|new\s+Function\s*\(|\bshell\s*:/);
    }
    // The CLI needs the file system (package.json, --stdin) and at most argument parsing.
    expect(seen['cli.js']!.filter((module) => !['node:fs', 'node:util'].includes(module))).toStrictEqual([]);
  });

  test('no file of lib/ imports child_process or cluster', () => {
    for (const name of readdirSync(join(ROOT, 'lib')).filter((file) => file.endsWith('.ts'))) {
      const imports = importsOf(readFileSync(join(ROOT, 'lib', name), 'utf8'));
      expect(imports.filter((module) => PROCESS_MODULES.includes(module)), name).toStrictEqual([]);
    }
  });

  // libremctl itself is left out: it bundles rra-c-util's vector_exec(), and so links execv,
  // though no client function calls it.
  test('the addon imports no function that starts a program', () => {
    const SPAWNERS = /^(system|popen|execl|execle|execlp|execv|execve|execvp|execvpe|fexecve|posix_spawn|posix_spawnp|fork|vfork|wordexp)$/;
    const addon = join(ROOT, 'build', 'Release', 'remctl.node');
    expect(statSync(addon).isFile()).toBe(true);
    const undefinedSymbols = execFileSync('nm', ['-D', '--undefined-only', addon], { encoding: 'utf8' })
      .split('\n')
      .map((line) => (line.trim().split(/\s+/).at(-1) ?? '').replace(/@.*/, ''))
      .filter(Boolean);
    // It does import what it should: libremctl's calls.
    expect(undefinedSymbols).toEqual(expect.arrayContaining(['remctl_open_fd', 'remctl_commandv', 'remctl_output']));
    expect(undefinedSymbols.filter((symbol) => SPAWNERS.test(symbol))).toStrictEqual([]);
  });
});

describe('arguments arrive verbatim, as protocol arguments', () => {
  test('remctl(), remctlSync() and spawn() send shell syntax through untouched', async () => {
    const args = ['test', 'echo', ...hostile];
    const expected = { stdout: echoed(hostile), stderr: 'stderr line\n', status: 0 };
    expect(await remctl(settings.host, args, { ...where, encoding: 'utf8' })).toStrictEqual(expected);
    expect(remctlSync(settings.host, args, { ...where, encoding: 'utf8' })).toStrictEqual(expected);
    const child = spawn(settings.host, args, where);
    const chunks: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stderr.resume();
    expect(await child.status).toBe(0);
    expect(Buffer.concat(chunks).toString()).toBe(expected.stdout);
    expectNothingRan();
  });

  test('Remctl#run, #spawn and #command send shell syntax through untouched', async () => {
    const args = ['test', 'echo', ...hostile];
    await using connection = await Remctl.connect(settings.host, where);
    expect((await connection.run(args, { encoding: 'utf8' })).stdout).toBe(echoed(hostile));
    const child = connection.spawn(args);
    const chunks: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stderr.resume();
    expect(await child.status).toBe(0);
    expect(Buffer.concat(chunks).toString()).toBe(echoed(hostile));
    await connection.command(args);
    const tokens = [];
    for await (const token of connection.outputs()) tokens.push(token);
    const stdout = tokens.flatMap((token) => (token.type === 'output' && token.stream === 1 ? [token.data] : []));
    expect(Buffer.concat(stdout).toString()).toBe(echoed(hostile));
    expectNothingRan();
  });

  test('the C API, remctl_command, remctl_commandv and the one-shot remctl, sends shell syntax through untouched', async () => {
    const args = ['test', 'echo', ...hostile];
    const oneShot = await _remctl.remctl(settings.host, settings.port, settings.principal, args);
    expect(oneShot.error).toBeNull();
    expect(oneShot.stdout.toString()).toBe(echoed(hostile));
    const r = _remctl.remctl_new();
    try {
      expect(await _remctl.remctl_open(r, settings.host, settings.port, settings.principal)).toBe(true);
      for (const send of [_remctl.remctl_command, _remctl.remctl_commandv]) {
        expect(await send(r, args)).toBe(true);
        let stdout = '';
        for (;;) {
          const token = await _remctl.remctl_output(r);
          expect(token).not.toBeNull();
          if (token!.type !== 'output') break;
          if (token!.stream === 1) stdout += token!.data.toString();
        }
        expect(stdout).toBe(echoed(hostile));
      }
    } finally {
      await _remctl.remctl_close(r);
    }
    expectNothingRan();
  });

  test('the remctl command sends shell syntax through untouched, from its argv and from --stdin', async () => {
    const fromArgv = await runCli([...target(), 'test', 'echo', ...hostile]);
    expect(fromArgv).toStrictEqual({ status: 0, stdout: echoed(hostile), stderr: 'stderr line\n' });
    const input = hostile.join(' ');
    const fromStdin = await runCli(['--stdin', ...target(), 'test', 'echo', '-', '$(id)'], input);
    expect(fromStdin).toStrictEqual({ status: 0, stdout: echoed([input, '$(id)']), stderr: 'stderr line\n' });
    expectNothingRan();
  });
});

/** The options that point the CLI at the realm's remctld. */
const target = () => ['-p', String(settings.port), '-s', settings.principal, settings.host];

function runCli(args: string[], input = ''): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawnProcess(process.execPath, [CLI, ...args], { env: { ...process.env, ...settings.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

describe("the CLI's -d output", () => {
  const SECRET = 'hunter2-s3cr3t-value';

  /** The lines -d added: stderr without what the server itself wrote there. */
  const debugLines = (stderr: string) => stderr.split('\n').filter((line) => line.startsWith('remctl: '));

  test('says what it does, and never prints an argument value given on the command line', async () => {
    const result = await runCli(['-d', ...target(), 'test', 'echo', SECRET, 'password=' + SECRET]);
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(`${SECRET}\npassword=${SECRET}\n`);
    const lines = debugLines(result.stderr);
    expect(lines.length).toBeGreaterThan(0);
    expect(result.stderr).not.toContain(SECRET);
    expect(result.stderr).not.toContain('echo');
    console.info(`-d printed:\n${lines.join('\n')}`);
  });

  test('never prints an argument read with --stdin, nor one of a command that fails', async () => {
    const fromStdin = await runCli(['-d', '--stdin', ...target(), 'test', 'stdinsize', '-'], SECRET);
    expect(fromStdin.status).toBe(0);
    expect(fromStdin.stdout).toBe(`${SECRET.length}\n`);
    expect(debugLines(fromStdin.stderr).length).toBeGreaterThan(0);
    expect(fromStdin.stderr).not.toContain(SECRET);

    const refused = await runCli(['-d', ...target(), 'no-such-command', SECRET]);
    expect(refused.status).toBe(255);
    expect(refused.stderr).toContain('Unknown command');
    expect(refused.stderr).not.toContain(SECRET);

    const unreachable = await runCli(['-d', '-p', '1', '-s', settings.principal, settings.host, 'test', SECRET]);
    expect(unreachable.status).toBe(1);
    expect(unreachable.stderr).toMatch(/cannot connect to localhost \(port 1\)/);
    expect(unreachable.stderr).not.toContain(SECRET);
  });
});
