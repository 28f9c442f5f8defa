// The low-level layer, _remctl: the C API one function at a time, against the realm's stock
// remctld. Where libremctl has a wording of its own, the expected text is libremctl's, checked
// against the C client (`remctl`) where it can say the same thing.

import { execFile } from 'node:child_process';
import { closeSync, fstatSync, openSync, readdirSync } from 'node:fs';
import { counts, countsSettle } from './metrics.mjs';
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import { _remctl } from '../dist/index.js';
import { runNode } from './probes.js';
import { realm } from './realm-context.mjs';
import { freePort } from './realm-control.mjs';
import { bigPattern } from './realm.mjs';

const {
  remctl,
  remctl_close,
  remctl_command,
  remctl_commandv,
  remctl_error,
  remctl_new,
  remctl_noop,
  remctl_open,
  remctl_open_addrinfo,
  remctl_open_fd,
  remctl_open_sockaddr,
  remctl_output,
  remctl_set_ccache,
  remctl_set_source_ip,
  remctl_set_timeout,
} = _remctl;

type Handle = ReturnType<typeof remctl_new>;
type Token = NonNullable<Awaited<ReturnType<typeof remctl_output>>>;

const ERROR_UNKNOWN_COMMAND = 5;
const ERROR_ACCESS = 6;
const DROP_HANDLE = fileURLToPath(new URL('./fixtures/drop-handle.mjs', import.meta.url));

const settings = realm();
const { host, port, principal } = settings;
let closedPort: number;

beforeAll(async () => {
  closedPort = await freePort();
});

// Every handle a test makes is closed after it, whatever the test did, so that no connection or
// thread outlives the test that made it.
const handles = new Set<Handle>();

function newHandle(): Handle {
  const r = remctl_new();
  handles.add(r);
  return r;
}

afterEach(async () => {
  for (const r of handles) {
    try {
      await remctl_close(r);
    } catch {
      // Closed by the test already.
    }
  }
  handles.clear();
});

async function openHandle(): Promise<Handle> {
  const r = newHandle();
  const opened = await remctl_open(r, host, port, principal);
  expect(opened, remctl_error(r)).toBe(true);
  return r;
}

/** The tokens of one command, up to and including its status or error token. */
async function readTokens(r: Handle): Promise<Token[]> {
  const tokens: Token[] = [];
  for (;;) {
    const token = await remctl_output(r);
    expect(token, remctl_error(r)).not.toBeNull();
    tokens.push(token!);
    if (token!.type !== 'output') return tokens;
  }
}

/** A command's stdout, stderr and status, read token by token. */
async function readResult(r: Handle): Promise<{ stdout: Buffer; stderr: Buffer; status: number | undefined }> {
  const tokens = await readTokens(r);
  const stream = (n: number) =>
    Buffer.concat(tokens.flatMap((token) => (token.type === 'output' && token.stream === n ? [token.data] : [])));
  const last = tokens.at(-1)!;
  return { stdout: stream(1), stderr: stream(2), status: last.type === 'status' ? last.status : undefined };
}

/** What fn threw or rejected with. */
async function failure(fn: () => unknown): Promise<Error> {
  try {
    await fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a TypeError or RangeError, but nothing was thrown');
}

/** Any value, passed where the types forbid it. */
const wrong = (value: unknown) => value as never;


/** Runs the C client with extra options, in the realm's Kerberos environment. */
function runCClient(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile('remctl', args, { env: { ...process.env, ...settings.env } }, (error, _stdout, stderr) => {
      resolve({ code: typeof error?.code === 'number' ? error.code : 0, stderr });
    });
  });
}

function connectedSocket(): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port });
  // Paused before the loop turns, so libuv never reads the bytes meant for libremctl.
  socket.pause();
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

describe('running a command on an open connection', () => {
  test('remctl_commandv then remctl_output yields the stdout token, the status token, then done', async () => {
    const r = newHandle();
    expect(await remctl_open(r, host, port, principal)).toBe(true);
    expect(await remctl_commandv(r, ['test', 'test'])).toBe(true);
    expect(await remctl_output(r)).toStrictEqual({ type: 'output', data: Buffer.from('hello world\n'), stream: 1 });
    expect(await remctl_output(r)).toStrictEqual({ type: 'status', status: 0 });
    expect(await remctl_output(r)).toStrictEqual({ type: 'done' });
    expect(remctl_error(r)).toBe('no error');
  });

  test('output tokens carry their data as a Buffer', async () => {
    const r = await openHandle();
    await remctl_commandv(r, ['test', 'test']);
    const token = await remctl_output(r);
    expect(token?.type).toBe('output');
    expect(Buffer.isBuffer(token?.type === 'output' && token.data)).toBe(true);
  });

  test('remctl_output keeps returning done once the status has been read', async () => {
    const r = await openHandle();
    await remctl_commandv(r, ['test', 'test']);
    await readTokens(r);
    for (let i = 0; i < 3; i++) expect(await remctl_output(r)).toStrictEqual({ type: 'done' });
  });

  test('remctl_command sends strings, as the C function sends NUL-terminated strings', async () => {
    const r = await openHandle();
    expect(await remctl_command(r, ['test', 'echo', 'two words', 'grüße'])).toBe(true);
    const result = await readResult(r);
    expect(result.stdout.toString()).toBe('two words\ngrüße\n');
    expect(result.stderr.toString()).toBe('stderr line\n');
    expect(result.status).toBe(0);
  });

  test('one connection runs several commands in turn', async () => {
    const r = await openHandle();
    for (const n of ['1', '2', '3']) {
      expect(await remctl_commandv(r, ['test', 'status', n])).toBe(true);
      expect((await readResult(r)).status).toBe(Number(n));
    }
  });

  test('test status 3 ends with a status token of 3 and no output', async () => {
    const r = await openHandle();
    await remctl_commandv(r, ['test', 'status', '3']);
    expect(await readTokens(r)).toStrictEqual([{ type: 'status', status: 3 }]);
  });

  test('standard error arrives as output tokens on stream 2', async () => {
    const r = await openHandle();
    await remctl_commandv(r, ['test', 'stderr']);
    expect(await readTokens(r)).toStrictEqual([
      { type: 'output', data: Buffer.from('this is stderr\n'), stream: 2 },
      { type: 'status', status: 2 },
    ]);
  });

  test('an unknown command yields an error token with ERROR_UNKNOWN_COMMAND, then done', async () => {
    const r = await openHandle();
    expect(await remctl_commandv(r, ['no-such-command'])).toBe(true);
    expect(await remctl_output(r)).toStrictEqual({
      type: 'error',
      data: Buffer.from('Unknown command'),
      error: ERROR_UNKNOWN_COMMAND,
    });
    expect(await remctl_output(r)).toStrictEqual({ type: 'done' });
  });

  test('a command the ACL refuses yields an error token with ERROR_ACCESS', async () => {
    const r = await openHandle();
    await remctl_commandv(r, ['restricted']);
    expect(await remctl_output(r)).toStrictEqual({ type: 'error', data: Buffer.from('Access denied'), error: ERROR_ACCESS });
  });

  test('an argument holding every byte value, NUL and 0x80-0xFF included, comes back byte for byte', async () => {
    const r = await openHandle();
    const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const data = Buffer.concat([everyByte, Buffer.from([0, 0, 0xff, 0]), everyByte.reverse()]);
    expect(await remctl_commandv(r, ['test', 'stdin', data])).toBe(true);
    const result = await readResult(r);
    expect(result.status).toBe(0);
    expect(result.stdout.equals(data)).toBe(true);
  });

  test('arguments may be Uint8Arrays as well as Buffers and strings', async () => {
    const r = await openHandle();
    await remctl_commandv(r, [Buffer.from('test'), 'stdin', new Uint8Array([0, 1, 2, 0xfe])]);
    expect((await readResult(r)).stdout).toStrictEqual(Buffer.from([0, 1, 2, 0xfe]));
  });

  test('8 MiB of output is read completely and equals the pattern test big writes', async () => {
    const r = await openHandle();
    const size = 8 * 1024 * 1024;
    await remctl_commandv(r, ['test', 'big', String(size)]);
    const result = await readResult(r);
    expect(result.status).toBe(0);
    expect(result.stderr).toHaveLength(0);
    expect(result.stdout.length).toBe(size);
    expect(result.stdout.equals(bigPattern(size))).toBe(true);
  });

  test('remctl_noop resolves true on an open connection, which then still runs commands', async () => {
    const r = await openHandle();
    expect(await remctl_noop(r)).toBe(true);
    await remctl_commandv(r, ['test', 'test']);
    expect((await readResult(r)).stdout.toString()).toBe('hello world\n');
  });
});

describe('timeouts', () => {
  test('with remctl_set_timeout(r, 1), test sleep 5 makes remctl_output resolve null with "timed out" after about a second', async () => {
    const r = newHandle();
    expect(remctl_set_timeout(r, 1)).toBe(true);
    expect(await remctl_open(r, host, port, principal)).toBe(true);
    expect(await remctl_commandv(r, ['test', 'sleep', '5'])).toBe(true);
    const started = performance.now();
    const token = await remctl_output(r);
    const elapsed = performance.now() - started;
    expect(token).toBeNull();
    expect(remctl_error(r)).toBe('error receiving token: timed out');
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(2500);
    console.info(`remctl_output timed out after ${Math.round(elapsed)} ms`);
  });

  test('a timeout of 1 second leaves a command that answers at once alone', async () => {
    const r = newHandle();
    remctl_set_timeout(r, 1);
    await remctl_open(r, host, port, principal);
    await remctl_commandv(r, ['test', 'test']);
    expect((await readResult(r)).stdout.toString()).toBe('hello world\n');
  });

  test('remctl_set_timeout with a negative timeout returns false and remctl_error says "invalid timeout -1"', () => {
    const r = newHandle();
    expect(remctl_set_timeout(r, -1)).toBe(false);
    expect(remctl_error(r)).toBe('invalid timeout -1');
  });
});

describe('ticket caches', () => {
  test('remctl_set_ccache with a missing ticket cache makes remctl_open fail with a GSS-API error', async () => {
    const r = newHandle();
    expect(remctl_set_ccache(r, `FILE:${settings.dir}/no-such.ccache`)).toBe(true);
    expect(await remctl_open(r, host, port, principal)).toBe(false);
    expect(remctl_error(r)).toMatch(/^GSS-API error .*No credentials cache found/);
  });

  test("remctl_set_ccache with the realm's client ticket cache opens and authenticates as client@", async () => {
    const r = newHandle();
    expect(remctl_set_ccache(r, settings.ccache)).toBe(true);
    expect(await remctl_open(r, host, port, principal)).toBe(true);
    await remctl_commandv(r, ['test', 'whoami']);
    expect((await readResult(r)).stdout.toString()).toBe(`${settings.clientPrincipal}\n`);
  });

  test("the ticket cache selects the identity: test whoami with other's cache prints other@", async () => {
    const r = newHandle();
    remctl_set_ccache(r, settings.otherCcache);
    expect(await remctl_open(r, host, port, principal)).toBe(true);
    await remctl_commandv(r, ['test', 'whoami']);
    expect((await readResult(r)).stdout.toString()).toBe(`${settings.otherPrincipal}\n`);
    await remctl_commandv(r, ['restricted']);
    expect((await readResult(r)).stdout.toString()).toBe('restricted ok\n');
  });
});

describe('source addresses', () => {
  test("remctl_set_source_ip('127.0.0.1') connects to 127.0.0.1 and runs commands", async () => {
    const r = newHandle();
    expect(remctl_set_source_ip(r, '127.0.0.1')).toBe(true);
    expect(await remctl_open(r, '127.0.0.1', port, principal)).toBe(true);
    await remctl_commandv(r, ['test', 'test']);
    expect((await readResult(r)).stdout.toString()).toBe('hello world\n');
  });

  test("remctl_set_source_ip('::1') towards 127.0.0.1 fails with the C client's words", async () => {
    const r = newHandle();
    remctl_set_source_ip(r, '::1');
    expect(await remctl_open(r, '127.0.0.1', port, principal)).toBe(false);
    const message = remctl_error(r);
    expect(message).toBe(`cannot connect to 127.0.0.1 (port ${port}): Invalid argument`);
    const c = await runCClient(['-b', '::1', '-p', String(port), '-s', principal, '127.0.0.1', 'test', 'test']);
    expect(c.code).not.toBe(0);
    expect(c.stderr).toBe(`remctl: ${message}\n`);
  });
});

describe('connection failures', () => {
  test('a closed port fails with "cannot connect to localhost (port N): Connection refused"', async () => {
    const r = newHandle();
    expect(await remctl_open(r, 'localhost', closedPort, principal)).toBe(false);
    expect(remctl_error(r)).toBe(`cannot connect to localhost (port ${closedPort}): Connection refused`);
  });

  test('port 0 tries 4373 then 4444 and reports the failure on 4373', async () => {
    const r = newHandle();
    expect(await remctl_open(r, 'localhost', 0, principal)).toBe(false);
    expect(remctl_error(r)).toBe('cannot connect to localhost (port 4373): Connection refused');
  });

  test('an unknown host fails with "unknown host"', async () => {
    const r = newHandle();
    expect(await remctl_open(r, 'no-such-host.invalid', port, principal)).toBe(false);
    expect(remctl_error(r)).toMatch(/^unknown host no-such-host\.invalid: /);
  });

  test('a handle that failed to open opens on its next try', async () => {
    const r = newHandle();
    expect(await remctl_open(r, 'localhost', closedPort, principal)).toBe(false);
    expect(await remctl_open(r, host, port, principal)).toBe(true);
    expect(remctl_error(r)).toBe('no error');
    await remctl_commandv(r, ['test', 'test']);
    expect((await readResult(r)).stdout.toString()).toBe('hello world\n');
  });
});

describe('the one-shot remctl()', () => {
  test('returns error null, stdout, stderr and status for a command that ran', async () => {
    const result = await remctl(host, port, principal, ['test', 'echo', 'a', Buffer.from([0xff])]);
    expect(result).toStrictEqual({
      error: null,
      stdout: Buffer.from('a\n\xff\n', 'latin1'),
      stderr: Buffer.from('stderr line\n'),
      status: 0,
    });
  });

  test("returns the command's exit status", async () => {
    const result = await remctl(host, port, principal, ['test', 'status', '3']);
    expect(result.error).toBeNull();
    expect(result.status).toBe(3);
  });

  test("for an unknown command, error is the server's message", async () => {
    const result = await remctl(host, port, principal, ['no-such-command']);
    expect(result.error).toBe('Unknown command');
    expect(result.stdout).toHaveLength(0);
  });

  test('for a refused connection, error is the connect failure', async () => {
    const result = await remctl('localhost', closedPort, principal, ['test', 'test']);
    expect(result.error).toBe(`cannot connect to localhost (port ${closedPort}): Connection refused`);
  });
});

describe('the other ways to open', () => {
  test('remctl_open_sockaddr connects to one numeric address', async () => {
    const r = newHandle();
    expect(await remctl_open_sockaddr(r, host, { address: '127.0.0.1', port }, principal)).toBe(true);
    await remctl_commandv(r, ['test', 'test']);
    expect((await readResult(r)).stdout.toString()).toBe('hello world\n');
  });

  test('remctl_open_addrinfo skips an address that refuses and uses the next one', async () => {
    const r = newHandle();
    const addresses = [
      { address: '127.0.0.1', port: closedPort },
      { address: '127.0.0.1', port },
    ];
    expect(await remctl_open_addrinfo(r, null, addresses, principal)).toBe(true);
    await remctl_commandv(r, ['test', 'test']);
    expect((await readResult(r)).stdout.toString()).toBe('hello world\n');
  });

  test('remctl_open_addrinfo with no address that answers fails with "cannot connect: Connection refused"', async () => {
    const r = newHandle();
    expect(await remctl_open_addrinfo(r, null, [{ address: '127.0.0.1', port: closedPort }], principal)).toBe(false);
    expect(remctl_error(r)).toBe('cannot connect: Connection refused');
  });

  test("remctl_open_fd runs commands over a connected socket, on its own duplicate of the caller's descriptor", async () => {
    const socket = await connectedSocket();
    const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
    const r = newHandle();
    try {
      expect(await remctl_open_fd(r, 'localhost', fd, principal)).toBe(true);
    } finally {
      socket.destroy();
    }
    await remctl_commandv(r, ['test', 'test']);
    expect((await readResult(r)).stdout.toString()).toBe('hello world\n');
    await remctl_commandv(r, ['test', 'status', '4']);
    expect((await readResult(r)).status).toBe(4);
  });

  test("remctl_close leaves the caller's descriptor open", async () => {
    const socket = await connectedSocket();
    const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
    try {
      const r = newHandle();
      expect(await remctl_open_fd(r, null, fd, principal)).toBe(true);
      await remctl_close(r);
      expect(fstatSync(fd).isSocket()).toBe(true);
    } finally {
      socket.destroy();
    }
  });
});

describe('handle state and programmer errors', () => {
  test('remctl_error is "no error" on a fresh handle', () => {
    expect(remctl_error(newHandle())).toBe('no error');
  });

  test('remctl_command before remctl_open fails with "no connection open"', async () => {
    const r = newHandle();
    expect(await remctl_command(r, ['test', 'test'])).toBe(false);
    expect(remctl_error(r)).toBe('no connection open');
  });

  test('remctl_output and remctl_noop before remctl_open fail with "no connection open"', async () => {
    const r = newHandle();
    expect(await remctl_output(r)).toBeNull();
    expect(remctl_error(r)).toBe('no connection open');
    expect(await remctl_noop(r)).toBe(false);
    expect(remctl_error(r)).toBe('no connection open');
  });

  test('a host that is not a string is a TypeError naming host', async () => {
    const error = await failure(() => remctl_open(newHandle(), wrong(42), port, principal));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toBe('host must be a string, got number 42');
  });

  test('a port out of range is a RangeError: "invalid port number: -1"', async () => {
    const error = await failure(() => remctl_open(newHandle(), 'localhost', -1, principal));
    expect(error).toBeInstanceOf(RangeError);
    expect(error.message).toBe('invalid port number: -1');
  });

  test('a command given as one string is a TypeError that shows the array to pass', async () => {
    const r = await openHandle();
    const error = await failure(() => remctl_commandv(r, wrong('test test')));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toBe('command must be an iterable of arguments, not a single string: pass ["test", "test"], not "test test"');
  });

  test('an empty command is a TypeError', async () => {
    const error = await failure(() => remctl_commandv(newHandle(), []));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toBe('command must not be empty');
  });

  test('a command argument that is neither string nor bytes is a TypeError naming its index', async () => {
    const error = await failure(() => remctl_commandv(newHandle(), wrong([1])));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toBe('command arguments must be strings or Buffers (command[0] is number 1)');
  });

  test('remctl_command refuses an argument with a NUL byte and points to remctl_commandv', async () => {
    const error = await failure(() => remctl_command(newHandle(), ['test', 'a\0b']));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toBe('command[1] must not contain a NUL byte; use remctl_commandv for binary arguments');
  });

  test('something other than a handle as r is a TypeError naming r', async () => {
    for (const call of [
      () => remctl_open(wrong({}), host, port, principal),
      () => remctl_commandv(wrong(null), ['test', 'test']),
      () => remctl_output(wrong('r')),
      () => remctl_error(wrong(undefined)),
      () => remctl_set_timeout(wrong({ closed: false }), 1),
    ]) {
      const error = await failure(call);
      expect(error).toBeInstanceOf(TypeError);
      expect(error.message).toBe('r must be a remctl handle from remctl_new()');
    }
  });

  test('a handle used after remctl_close is a TypeError', async () => {
    const r = await openHandle();
    await remctl_close(r);
    for (const call of [
      () => remctl_commandv(r, ['test', 'test']),
      () => remctl_output(r),
      () => remctl_error(r),
      () => remctl_open(r, host, port, principal),
      () => remctl_set_timeout(r, 1),
      () => remctl_close(r),
    ]) {
      const error = await failure(call);
      expect(error).toBeInstanceOf(TypeError);
      expect(error.message).toBe('r must be an open remctl handle: it was closed');
    }
  });

  test('a handle that was never opened closes', async () => {
    const r = remctl_new();
    await expect(remctl_close(r)).resolves.toBeUndefined();
  });
});

describe('descriptors, threads and the event loop', () => {
  test('with 1100 descriptors open, a handle sets a timeout, opens, runs commands and times out without aborting', async () => {
    const held: number[] = [];
    try {
      for (let i = 0; i < 1100; i++) held.push(openSync('/dev/null', 'r'));
      // Everything opened from here on is above FD_SETSIZE, where select() aborts.
      expect(held.at(-1)).toBeGreaterThanOrEqual(1024);
      const r = newHandle();
      expect(remctl_set_timeout(r, 1)).toBe(true);
      expect(await remctl_open(r, host, port, principal)).toBe(true);
      expect(readdirSync('/proc/self/fd').map(Number).filter((fd) => fd > held.at(-1)!).length).toBeGreaterThan(0);
      await remctl_commandv(r, ['test', 'test']);
      expect((await readResult(r)).stdout.toString()).toBe('hello world\n');
      await remctl_commandv(r, ['test', 'sleep', '5']);
      const started = performance.now();
      expect(await remctl_output(r)).toBeNull();
      expect(remctl_error(r)).toBe('error receiving token: timed out');
      expect(performance.now() - started).toBeLessThan(2500);
    } finally {
      for (const fd of held) closeSync(fd);
    }
  });

  test('after every handle is closed, the thread and descriptor counts return to where they were', async () => {
    // A cycle first, so that what Node and libkrb5 set up once and keep is in the baseline.
    const warmUp = await openHandle();
    await remctl_commandv(warmUp, ['test', 'test']);
    await readTokens(warmUp);
    await remctl_close(warmUp);
    await readFile(fileURLToPath(import.meta.url));
    // The warm-up handle's threads end just after remctl_close resolves.
    await sleep(300);
    const before = counts();

    const opened = await Promise.all(Array.from({ length: 4 }, () => openHandle()));
    await Promise.all(
      opened.map(async (r) => {
        await remctl_commandv(r, ['test', 'test']);
        await readTokens(r);
      }),
    );
    const during = counts();
    // Open connections hold descriptors, never a thread: the loop serves them.
    expect(during.threads).toBe(before.threads);
    expect(during.fds).toBeGreaterThan(before.fds);
    await Promise.all(opened.map((r) => remctl_close(r)));
    expect(await countsSettle(before)).toStrictEqual(before);
    console.info(`threads ${before.threads} -> ${during.threads} -> back; fds ${before.fds} -> ${during.fds} -> back`);
  });

  for (const mode of ['idle', 'pending'] as const) {
    const situation =
      mode === 'idle'
        ? 'with test sleep 10 running on the server is collected,'
        : 'while a remctl_output call waits on test sleep 10 is collected, the call is interrupted and resolves to null,';
    test(`a handle dropped without remctl_close ${situation} frees its threads and descriptors, and the process exits on its own`, async () => {
      const started = performance.now();
      const { code, signal, stdout, stderr } = await runNode(['--expose-gc', DROP_HANDLE, mode], settings);
      const elapsed = performance.now() - started;
      expect({ code, signal, stderr }).toStrictEqual({ code: 0, signal: null, stderr: '' });
      const report = JSON.parse(stdout);
      expect(report.collected).toBe(true);
      // While its command runs, the handle holds a socket but no thread.
      expect(report.during.threads).toBe(report.before.threads);
      expect(report.during.fds).toBeGreaterThan(report.before.fds);
      expect(report.after).toStrictEqual(report.before);
      if (mode === 'pending') {
        // Interrupted by the finalizer: no token of the command, long before its ten seconds.
        expect(report.token).toBeNull();
        expect(report.settledMs).toBeLessThan(6000);
      }
      // Nothing waited for the server's answer: the sleep did not hold the process.
      expect(report.elapsedMs).toBeLessThan(6000);
      expect(elapsed).toBeLessThan(9000);
      console.info(`drop-handle ${mode}: child ran ${Math.round(elapsed)} ms; ${JSON.stringify(report)}`);
    });
  }

  test('while 8 handles each run test sleep 1, timers keep firing and the libuv threadpool stays free', async () => {
    const opened = await Promise.all(Array.from({ length: 8 }, () => openHandle()));
    const gaps: number[] = [];
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      gaps.push(now - last);
      last = now;
    }, 10);
    try {
      const started = performance.now();
      const running = Promise.all(
        opened.map(async (r) => {
          expect(await remctl_commandv(r, ['test', 'sleep', '1'])).toBe(true);
          return readResult(r);
        }),
      );
      await sleep(200);
      const readStarted = performance.now();
      await readFile(fileURLToPath(import.meta.url));
      const readMs = performance.now() - readStarted;
      const results = await running;
      const totalMs = performance.now() - started;

      for (const result of results) expect(result.stdout.toString()).toBe('slept 1\n');
      // Eight one-second commands at once: they ran side by side, not one after another.
      expect(totalMs).toBeGreaterThanOrEqual(950);
      expect(totalMs).toBeLessThan(4000);
      expect(readMs).toBeLessThan(100);
      const maxGap = Math.max(...gaps);
      expect(gaps.length).toBeGreaterThan(50);
      expect(maxGap).toBeLessThan(100);
      console.info(
        `8 x test sleep 1: ${Math.round(totalMs)} ms in all; readFile ${readMs.toFixed(1)} ms; ` +
          `${gaps.length} ticks, longest gap ${maxGap.toFixed(1)} ms`,
      );
    } finally {
      clearInterval(ticker);
    }
  });
});
