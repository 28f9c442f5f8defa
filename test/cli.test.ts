// The command-line tool, dist/cli.js: a drop-in for the C client remctl(1), checked by running
// both on the same commands against the realm's stock remctld, plus its two additions, --json
// and --stdin.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, test } from 'vitest';
import { realm } from './realm-context.mjs';
import { freePort } from './realm-control.mjs';
import { bigPattern } from './realm.mjs';

const settings = realm();
const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const C_CLIENT = '/usr/bin/remctl';
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

interface Run {
  stdout: Buffer;
  stderr: string;
  status: number | null;
}

/** Runs a program in the realm's Kerberos environment, feeding it `input` on stdin. */
function run(file: string, args: string[], input?: Buffer | string, onStdout?: (chunk: Buffer) => void, argv0?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: { ...process.env, ...settings.env }, ...(argv0 === undefined ? {} : { argv0 }) });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => {
      stdout.push(chunk);
      onStdout?.(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', reject);
    child.on('close', (status) => resolve({ stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString(), status }));
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

const ours = (args: string[], input?: Buffer | string, onStdout?: (chunk: Buffer) => void) =>
  run(process.execPath, [CLI, ...args], input, onStdout);
// Named remctl, as from $PATH: getopt's messages start with the program's argv[0].
const theirs = (args: string[], input?: Buffer | string) => run(C_CLIENT, args, input, undefined, 'remctl');

/** The options that point either client at the realm's remctld. */
const target = (port = settings.port) => ['-p', String(port), '-s', settings.principal, settings.host];

let closedPort: number;
beforeAll(async () => {
  closedPort = await freePort();
});

describe('the remctl command agrees with the C client', () => {
  const cases: Array<{ what: string; args: () => string[]; expected: Partial<Run> }> = [
    { what: 'a command that succeeds (test test)', args: () => [...target(), 'test', 'test'], expected: { stdout: Buffer.from('hello world\n'), stderr: '', status: 0 } },
    { what: 'a command that exits 3', args: () => [...target(), 'test', 'status', '3'], expected: { stdout: Buffer.alloc(0), stderr: '', status: 3 } },
    { what: 'a command that exits 200', args: () => [...target(), 'test', 'status', '200'], expected: { status: 200 } },
    { what: 'a command that writes to stderr and exits 2', args: () => [...target(), 'test', 'stderr'], expected: { stdout: Buffer.alloc(0), stderr: 'this is stderr\n', status: 2 } },
    { what: 'a command killed by a signal', args: () => [...target(), 'test', 'killed'], expected: { status: 255 } },
    { what: 'arguments that look like options after the command', args: () => [...target(), 'test', 'echo', '-x', '-p', '-'], expected: { stdout: Buffer.from('-x\n-p\n-\n'), stderr: 'stderr line\n', status: 0 } },
    { what: 'an unknown command', args: () => [...target(), 'test', 'bogus'], expected: { stdout: Buffer.alloc(0), stderr: 'Unknown command\n', status: 255 } },
    { what: 'a command the ACL refuses', args: () => [...target(), 'restricted', 'x'], expected: { stdout: Buffer.alloc(0), stderr: 'Access denied\n', status: 255 } },
    {
      what: 'a closed port',
      args: () => [...target(closedPort), 'test', 'test'],
      expected: { stdout: Buffer.alloc(0), stderr: 'remctl: cannot connect to localhost (port CLOSED): Connection refused\n', status: 1 },
    },
    {
      what: 'a timeout (-t 1 with test sleep 3)',
      args: () => ['-t', '1', ...target(), 'test', 'sleep', '3'],
      expected: { stdout: Buffer.alloc(0), stderr: 'remctl: error reading from server: error receiving token: timed out\n', status: 1 },
    },
    { what: 'a usage error (no arguments)', args: () => [], expected: { stdout: Buffer.alloc(0), status: 1 } },
    { what: 'a usage error (a host and no command)', args: () => target(), expected: { stdout: Buffer.alloc(0), status: 1 } },
    { what: 'a port that is not a number', args: () => ['-p', 'abc', settings.host, 'test', 'test'], expected: { stderr: 'remctl: invalid port number 0\n', status: 1 } },
    { what: 'a port out of range', args: () => ['-p', '70000', settings.host, 'test', 'test'], expected: { stderr: 'remctl: invalid port number 70000\n', status: 1 } },
    // As getopt does, an option's value may start with a dash.
    { what: 'a negative timeout (-t -1)', args: () => ['-t', '-1', settings.host, 'test', 'test'], expected: { stderr: 'remctl: invalid timeout value -1\n', status: 1 } },
    { what: 'an unknown option (-x)', args: () => ['-x', settings.host, 'test', 'test'], expected: { status: 1 } },
  ];

  test.each(cases)('on $what: the same stdout bytes, stderr and exit status', async ({ args, expected }) => {
    const [c, node] = await Promise.all([theirs(args()), ours(args())]);
    expect({ stdout: node.stdout.toString('latin1'), stderr: node.stderr, status: node.status }).toEqual({
      stdout: c.stdout.toString('latin1'),
      stderr: c.stderr,
      status: c.status,
    });
    const stderr = expected.stderr?.replace('CLOSED', String(closedPort));
    expect(node).toMatchObject({ ...expected, ...(stderr === undefined ? {} : { stderr }) });
  });

  test('the usage error prints the C client usage on stderr', async () => {
    const [c, node] = await Promise.all([theirs([]), ours([])]);
    expect(c.stderr).toMatch(/^Usage: remctl <options> <host> <command> \[<subcommand> \[<parameters>\]\]\n/);
    expect(node.stderr).toBe(c.stderr);
  });

  test('on 8 MiB of binary output (test big 8388608): the same bytes, exactly those test big writes', async () => {
    const size = 8 * 1024 * 1024;
    const args = [...target(), 'test', 'big', String(size)];
    const [c, node] = await Promise.all([theirs(args), ours(args)]);
    expect(c.status).toBe(0);
    expect(node.status).toBe(0);
    expect(node.stderr).toBe(c.stderr);
    expect(node.stdout.length).toBe(size);
    expect(node.stdout.equals(c.stdout)).toBe(true);
    expect(node.stdout.equals(bigPattern(size))).toBe(true);
  });
});

describe('the remctl command', () => {
  test('writes output as it arrives: test lines prints its first line at once, the second 2 s later', async () => {
    const started = performance.now();
    const arrivals: Array<{ ms: number; data: string }> = [];
    const result = await ours([...target(), 'test', 'lines'], undefined, (chunk) =>
      arrivals.push({ ms: performance.now() - started, data: chunk.toString() }),
    );
    expect(result.status).toBe(0);
    expect(arrivals.map((arrival) => arrival.data)).toEqual(['first\n', 'second\n']);
    const [first, second] = arrivals as [(typeof arrivals)[0], (typeof arrivals)[0]];
    console.info(`cli test lines: first line after ${Math.round(first.ms)} ms, second after ${Math.round(second.ms)} ms`);
    expect(first.ms).toBeLessThan(1500);
    expect(second.ms - first.ms).toBeGreaterThanOrEqual(1800);
  });

  test('-h prints the C client usage plus --json and --stdin on stdout, and exits 0', async () => {
    const [c, node] = await Promise.all([theirs(['-h']), ours(['-h'])]);
    expect(node.status).toBe(0);
    expect(node.stderr).toBe('');
    const help = node.stdout.toString();
    expect(help.startsWith(c.stdout.toString())).toBe(true);
    expect(help).toMatch(/^ {4}--json +\S/m);
    expect(help).toMatch(/^ {4}--stdin +\S/m);
  });

  test('-v prints the version and exits 0', async () => {
    const node = await ours(['-v']);
    expect(node).toEqual({ stdout: Buffer.from(`remctl ${version}\n`), stderr: '', status: 0 });
  });

  test('-d reports progress on stderr but never an argument value', async () => {
    const node = await ours(['-d', ...target(), 'test', 'stdin', 'SECRETVALUE']);
    expect(node.status).toBe(0);
    // The value did go through: the server fed it to the command's stdin.
    expect(node.stdout.toString()).toBe('SECRETVALUE');
    expect(node.stderr).not.toBe('');
    expect(node.stderr).not.toContain('SECRETVALUE');
  });
});

describe('remctl --json', () => {
  test('prints valid UTF-8 output as text, with the status', async () => {
    const node = await ours(['--json', ...target(), 'test', 'echo', 'héllo ☃']);
    expect(node.status).toBe(0);
    expect(node.stderr).toBe('');
    expect(JSON.parse(node.stdout.toString())).toEqual({
      stdout: 'héllo ☃\n',
      stdoutEncoding: 'utf8',
      stderr: 'stderr line\n',
      stderrEncoding: 'utf8',
      status: 0,
    });
  });

  test('prints output that is not valid UTF-8 as base64, and says so', async () => {
    const node = await ours(['--json', '--stdin', ...target(), 'test', 'stdin', '-'], Buffer.from([0xff, 0xfe]));
    expect(node.status).toBe(0);
    const parsed = JSON.parse(node.stdout.toString()) as Record<string, unknown>;
    expect(parsed).toEqual({ stdout: '//4=', stdoutEncoding: 'base64', stderr: '', stderrEncoding: 'utf8', status: 0 });
    expect(Buffer.from(parsed.stdout as string, 'base64')).toEqual(Buffer.from([0xff, 0xfe]));
  });

  test('exits with the remote status and reports it', async () => {
    const node = await ours(['--json', ...target(), 'test', 'status', '3']);
    expect(node.status).toBe(3);
    expect(JSON.parse(node.stdout.toString())).toMatchObject({ stdout: '', stderr: '', status: 3 });
  });

  test('reports a protocol error as an error object with code, errorCode and message, and exits 255', async () => {
    const node = await ours(['--json', ...target(), 'test', 'bogus']);
    expect(node.status).toBe(255);
    const parsed = JSON.parse(node.stdout.toString()) as Record<string, unknown>;
    expect(parsed).toMatchObject({
      stdout: '',
      stderr: '',
      status: 255,
      error: { code: 'ERROR_UNKNOWN_COMMAND', errorCode: 5, message: 'Unknown command' },
    });
    const refused = JSON.parse((await ours(['--json', ...target(), 'restricted', 'x'])).stdout.toString()) as Record<string, unknown>;
    expect(refused.error).toEqual({ code: 'ERROR_ACCESS', errorCode: 6, message: 'Access denied' });
  });
});

describe('remctl --json failures', () => {
  test('a failed call prints only an error object with its code, message and system cause, and exits 1', async () => {
    const port = await freePort();
    const node = await ours(['--json', '-p', String(port), '-s', settings.principal, settings.host, 'test', 'test']);
    expect(node.status).toBe(1);
    const message = `cannot connect to localhost (port ${port}): Connection refused`;
    expect(node.stderr).toBe(`remctl: ${message}\n`);
    expect(JSON.parse(node.stdout.toString())).toEqual({
      error: {
        code: 'ERR_REMCTL_CONNECT',
        message,
        cause: { code: 'ECONNREFUSED', errno: -111, syscall: 'connect', address: expect.stringMatching(/^(127\.0\.0\.1|::1)$/), port },
      },
    });
  });

  test('an authentication failure (a principal the KDC does not know) prints ERR_REMCTL_AUTH, with no cause', async () => {
    const node = await ours(['--json', '-p', String(settings.port), '-s', `host/no-such-service.invalid@${settings.realm}`, settings.host, 'test', 'test']);
    expect(node.status).toBe(1);
    const parsed = JSON.parse(node.stdout.toString()) as { error: Record<string, unknown> };
    expect(parsed.error.code).toBe('ERR_REMCTL_AUTH');
    expect(parsed.error.message).toMatch(/^GSS-API error /);
    expect(parsed.error).not.toHaveProperty('cause');
  });
});

describe('remctl --stdin', () => {
  test('replaces an argument - with standard input, NUL bytes and all', async () => {
    const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const input = Buffer.concat([Buffer.from([0, 0]), everyByte, Buffer.from('\0tail\0')]);
    const node = await ours(['--stdin', ...target(), 'test', 'stdin', '-'], input);
    expect(node.status).toBe(0);
    expect(node.stderr).toBe('');
    expect(node.stdout.equals(input)).toBe(true);
  });

  test('leaves the other arguments alone', async () => {
    const node = await ours(['--stdin', ...target(), 'test', 'echo', 'before', '-', 'after'], 'from stdin');
    expect(node.status).toBe(0);
    expect(node.stdout.toString()).toBe('before\nfrom stdin\nafter\n');
  });

  test('without --stdin, - is sent as it is, as the C client sends it', async () => {
    const args = [...target(), 'test', 'echo', '-'];
    const [c, node] = await Promise.all([theirs(args, 'ignored'), ours(args, 'ignored')]);
    expect(node.stdout.toString()).toBe('-\n');
    expect(node.stdout.equals(c.stdout)).toBe(true);
    expect(node.status).toBe(c.status);
  });
});
