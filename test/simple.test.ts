// The one-shot call, remctl(): connect, authenticate, run one command, collect, close. Every
// test runs against the realm's stock remctld; where libremctl has a wording of its own, the
// expected message is libremctl's.

import { describe, expect, test, vi } from 'vitest';
import {
  DEFAULT_MAX_BUFFER,
  ERROR_ACCESS,
  ERROR_UNKNOWN_COMMAND,
  MaxBufferError,
  RemctlError,
  RemctlProtocolError,
  remctl,
} from '../dist/index.js';
import { countsSettle, settledCounts, socketInodes, socketsClosed, socketsSince } from './metrics.mjs';
import { rejection, silentServer } from './probes.js';
import { realm, runCRemctl } from './realm-context.mjs';
import { freePort } from './realm-control.mjs';
import { bigPattern } from './realm.mjs';

const settings = realm();
const { host } = settings;
// The realm's remctld listens on a port of its own and serves host/localhost@TEST.REMCTL.
const server = { port: settings.port, principal: settings.principal };

describe('remctl()', () => {
  test('runs a command and resolves to its stdout, stderr and exit status, as Buffers by default', async () => {
    const result = await remctl(host, ['test', 'echo', 'one', 'two words'], server);
    expect(result).toEqual({
      stdout: Buffer.from('one\ntwo words\n'),
      stderr: Buffer.from('stderr line\n'),
      status: 0,
    });
    expect(Buffer.isBuffer(result.stdout)).toBe(true);
    expect(Buffer.isBuffer(result.stderr)).toBe(true);
  });

  test("with encoding 'utf8' resolves to strings, bytes above 0x7F decoded", async () => {
    const result = await remctl(host, ['test', 'echo', 'naïve ☃'], { ...server, encoding: 'utf8' });
    expect(result).toEqual({ stdout: 'naïve ☃\n', stderr: 'stderr line\n', status: 0 });
  });

  test("any Buffer encoding may be asked for: 'hex' gives the output in hex", async () => {
    const result = await remctl(host, ['test', 'test'], { ...server, encoding: 'hex' });
    expect(result.stdout).toBe(Buffer.from('hello world\n').toString('hex'));
    expect(result.stderr).toBe('');
  });

  test('resolves, rather than rejects, with the status of a command that fails', async () => {
    expect(await remctl(host, ['test', 'status', '7'], server)).toEqual({
      stdout: Buffer.alloc(0),
      stderr: Buffer.alloc(0),
      status: 7,
    });
    expect(await remctl(host, ['test', 'stderr'], { ...server, encoding: 'utf8' })).toEqual({
      stdout: '',
      stderr: 'this is stderr\n',
      status: 2,
    });
  });

  test('reports exit statuses from 128 to 255 as the server sent them, never as negative numbers', async () => {
    for (const status of [127, 128, 200, 255]) {
      const result = await remctl(host, ['test', 'status', String(status)], server);
      expect({ asked: status, got: result.status }).toEqual({ asked: status, got: status });
    }
  });

  test('reports a command killed by a signal as status 255, the exit code the C client gives', async () => {
    const cClient = await runCRemctl(['test', 'killed']);
    expect(cClient.status).toBe(255);
    const result = await remctl(host, ['test', 'killed'], server);
    expect(result).toEqual({ stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), status: cClient.status });
  });

  test('passes Buffer arguments byte for byte, NUL and bytes above 0x7F included', async () => {
    const data = Buffer.from([0x00, 0x01, 0x7f, 0x80, 0xff, 0x0a, 0x00, 0x41]);
    const result = await remctl(host, ['test', 'stdin', data], server);
    expect(result.status).toBe(0);
    expect(result.stdout.equals(data)).toBe(true);
  });

  test('takes any iterable of arguments, such as a generator', async () => {
    function* command() {
      yield 'test';
      yield 'echo';
      yield 'from a generator';
    }
    const { stdout } = await remctl(host, command(), { ...server, encoding: 'utf8' });
    expect(stdout).toBe('from a generator\n');
  });

  test('collects a 16 MiB output whole', async () => {
    const size = 16 * 1024 * 1024;
    const { stdout, status } = await remctl(host, ['test', 'big', String(size)], server);
    expect(status).toBe(0);
    expect(stdout.length).toBe(size);
    expect(stdout.equals(bigPattern(size))).toBe(true);
  });

  test("without a principal authenticates to libremctl's default, host/<host>", async () => {
    const { stdout } = await remctl(host, ['test', 'test'], { port: server.port, encoding: 'utf8' });
    expect(stdout).toBe('hello world\n');
  });

  test('a principal the server does not hold keys for fails authentication with a RemctlError', async () => {
    const { error } = await rejection(remctl(host, ['test', 'test'], { ...server, principal: settings.otherServicePrincipal }));
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).not.toBeInstanceOf(RemctlProtocolError);
    expect((error as Error).message).toMatch(/^GSS-API error initializing context: .*The ticket isn't for us/);
  });

  test("a port nothing listens on rejects with a RemctlError in libremctl's words", async () => {
    const closedPort = await freePort();
    const { error } = await rejection(remctl(host, ['test', 'test'], { ...server, port: closedPort }));
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).toMatchObject({
      name: 'RemctlError',
      message: `cannot connect to localhost (port ${closedPort}): Connection refused`,
    });
  });

  test('without a port tries 4373, the registered port, and reports what went wrong there', async () => {
    // Nothing runs a remctld on 4373 or 4444 here, so both attempts fail; the first error is
    // the one libremctl reports.
    await expect(remctl(host, ['test', 'test'])).rejects.toThrow(
      new RemctlError('cannot connect to localhost (port 4373): Connection refused', 'ERR_REMCTL_CONNECT'),
    );
  });

  test("a host that does not resolve rejects with libremctl's unknown host message", async () => {
    await expect(remctl('no-such-host.invalid', ['test', 'test'], server)).rejects.toThrow(
      /^unknown host no-such-host\.invalid: /,
    );
  });

  test('an unknown command rejects with a RemctlProtocolError: code ERROR_UNKNOWN_COMMAND, errorCode 5', async () => {
    const { error } = await rejection(remctl(host, ['test', 'bogus'], server));
    expect(error).toBeInstanceOf(RemctlProtocolError);
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).toMatchObject({
      name: 'RemctlProtocolError',
      message: 'Unknown command',
      errorCode: ERROR_UNKNOWN_COMMAND,
      code: 'ERROR_UNKNOWN_COMMAND',
    });
    expect(ERROR_UNKNOWN_COMMAND).toBe(5);
  });

  test('a command the ACL refuses rejects with a RemctlProtocolError: code ERROR_ACCESS, errorCode 6', async () => {
    const { error } = await rejection(remctl(host, ['restricted', 'anything'], server));
    expect(error).toBeInstanceOf(RemctlProtocolError);
    expect(error).toMatchObject({ message: 'Access denied', errorCode: ERROR_ACCESS, code: 'ERROR_ACCESS' });
    expect(ERROR_ACCESS).toBe(6);
  });
});

describe('remctl() connection settings', () => {
  test('ccache authenticates from that ticket cache, and process.env.KRB5CCNAME stays as it was', async () => {
    const before = process.env.KRB5CCNAME;
    const asOther = remctl(host, ['test', 'whoami'], { ...server, ccache: settings.otherCcache, encoding: 'utf8' });
    const asClient = remctl(host, ['test', 'whoami'], { ...server, encoding: 'utf8' });
    expect((await asOther).stdout).toBe(`${settings.otherPrincipal}\n`);
    expect((await asClient).stdout).toBe(`${settings.clientPrincipal}\n`);
    expect(process.env.KRB5CCNAME).toBe(before);
    expect(process.env.KRB5CCNAME).toBe(settings.ccache);
    // The ACL lets other@ run what it refuses to client@.
    const restricted = await remctl(host, ['restricted', 'x'], { ...server, ccache: settings.otherCcache, encoding: 'utf8' });
    expect(restricted.stdout).toBe('restricted ok\n');
  });

  test("a ticket cache that does not exist rejects with libremctl's GSS-API message", async () => {
    await expect(
      remctl(host, ['test', 'test'], { ...server, ccache: `FILE:${settings.dir}/no-such.ccache` }),
    ).rejects.toThrow(/^GSS-API error importing ticket cache: .*No credentials cache found/);
  });

  test("sourceIp '127.0.0.1' connects from loopback", async () => {
    const { stdout } = await remctl(host, ['test', 'test'], { ...server, sourceIp: '127.0.0.1', encoding: 'utf8' });
    expect(stdout).toBe('hello world\n');
  });

  test('a sourceIp this host does not have fails to connect, in the words of the system', async () => {
    await expect(remctl(host, ['test', 'test'], { ...server, sourceIp: '192.0.2.1' })).rejects.toThrow(
      new RemctlError(`cannot connect to localhost (port ${server.port}): Cannot assign requested address`, 'ERR_REMCTL_CONNECT'),
    );
  });

  test("timeout: a command silent for longer rejects with 'error receiving token: timed out'", async () => {
    const started = Date.now();
    const { error, ms } = await rejection(remctl(host, ['test', 'sleep', '3'], { ...server, idleTimeout: 1000 }), started);
    expect(error).toBeInstanceOf(RemctlError);
    expect((error as Error).message).toBe('error receiving token: timed out');
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(2500);
    // A timeout of 0 is no timeout at all.
    const { stdout } = await remctl(host, ['test', 'sleep', '1.2'], { ...server, idleTimeout: 0, encoding: 'utf8' });
    expect(stdout).toBe('slept 1.2\n');
  });

  test('a timeout longer than the wait lets the command finish', async () => {
    const { stdout } = await remctl(host, ['test', 'sleep', '0.5'], { ...server, idleTimeout: 5000, encoding: 'utf8' });
    expect(stdout).toBe('slept 0.5\n');
  });
});

describe('remctl() maxBuffer', () => {
  test('output beyond maxBuffer rejects with a MaxBufferError carrying what arrived, and the next call works', async () => {
    const { error } = await rejection(remctl(host, ['test', 'big', '100000'], { ...server, maxBuffer: 1000 }));
    expect(error).toBeInstanceOf(MaxBufferError);
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).toMatchObject({
      name: 'MaxBufferError',
      code: 'ERR_REMCTL_MAXBUFFER',
      message: 'stdout and stderr exceeded maxBuffer (1000 bytes); the connection was closed',
    });
    const partial = error as MaxBufferError;
    expect(partial.stdout.length).toBeLessThanOrEqual(1000);
    expect(partial.stdout.equals(bigPattern(partial.stdout.length))).toBe(true);
    expect(partial.stderr.length).toBe(0);

    const next = await remctl(host, ['test', 'test'], { ...server, encoding: 'utf8' });
    expect(next).toEqual({ stdout: 'hello world\n', stderr: '', status: 0 });
  });

  test('maxBuffer counts stdout and stderr together, and output exactly at the limit is accepted', async () => {
    // "x\n" on stdout and "stderr line\n" on stderr: 14 bytes.
    const atLimit = await remctl(host, ['test', 'echo', 'x'], { ...server, maxBuffer: 14, encoding: 'utf8' });
    expect(atLimit).toEqual({ stdout: 'x\n', stderr: 'stderr line\n', status: 0 });
    await expect(remctl(host, ['test', 'echo', 'x'], { ...server, maxBuffer: 13 })).rejects.toThrow(MaxBufferError);
  });

  test('by default 64 MiB are kept: a 64 MiB output arrives whole, one byte more is refused', async () => {
    expect(DEFAULT_MAX_BUFFER).toBe(64 * 1024 * 1024);
    const whole = await remctl(host, ['test', 'big', String(DEFAULT_MAX_BUFFER)], server);
    expect(whole.stdout.length).toBe(DEFAULT_MAX_BUFFER);
    const { error } = await rejection(remctl(host, ['test', 'big', String(DEFAULT_MAX_BUFFER + 1)], server));
    expect(error).toBeInstanceOf(MaxBufferError);
    expect((error as Error).message).toBe(`stdout and stderr exceeded maxBuffer (${DEFAULT_MAX_BUFFER} bytes); the connection was closed`);
  });

  test('maxBuffer Infinity keeps everything', async () => {
    const { stdout } = await remctl(host, ['test', 'big', '200000'], { ...server, maxBuffer: Infinity });
    expect(stdout.equals(bigPattern(200000))).toBe(true);
  });
});

describe('remctl() signal', () => {
  test('a signal aborted before the call rejects with its reason and never connects', async () => {
    const listener = await silentServer();
    try {
      const controller = new AbortController();
      const reason = new Error('changed my mind');
      controller.abort(reason);
      await expect(remctl(host, ['test', 'test'], { port: listener.port, signal: controller.signal })).rejects.toBe(reason);
      // And with the default reason, an AbortError.
      const { error } = await rejection(remctl(host, ['test', 'test'], { port: listener.port, signal: AbortSignal.abort() }));
      expect(error).toMatchObject({ name: 'AbortError' });
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(listener.accepted).toBe(0);
    } finally {
      await listener.close();
    }
  });

  test('aborting while the command runs rejects within a fraction of a second with signal.reason, and the call\'s thread and socket are gone at once', async () => {
    await remctl(host, ['test', 'test'], server);
    const before = await settledCounts();
    const sockets = socketInodes();
    const controller = new AbortController();
    const call = remctl(host, ['test', 'sleep', '10'], { ...server, signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const mine = socketsSince(sockets);
    expect(mine).not.toHaveLength(0);
    const abortedAt = Date.now();
    controller.abort();
    const { error, ms } = await rejection(call, abortedAt);
    expect(error).toBe(controller.signal.reason);
    expect(error).toMatchObject({ name: 'AbortError' });
    expect(ms).toBeLessThan(1000);
    // Interrupted, not left to wait the command out: its socket closed and its thread gone within
    // 3 s of a 10 s sleep.
    expect(await socketsClosed(mine)).toStrictEqual([]);
    expect(await countsSettle(before)).toStrictEqual(before);
  });

  test('aborting while the server has not answered yet rejects promptly and lets go of the socket and thread', async () => {
    await remctl(host, ['test', 'test'], server);
    const listener = await silentServer();
    // The listener's own descriptor is in the baseline.
    const before = await settledCounts();
    try {
      const controller = new AbortController();
      const call = remctl(host, ['test', 'test'], { port: listener.port, signal: controller.signal });
      await vi.waitFor(() => expect(listener.accepted).toBe(1));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const abortedAt = Date.now();
      controller.abort();
      const { error, ms } = await rejection(call, abortedAt);
      expect(error).toBe(controller.signal.reason);
      expect(ms).toBeLessThan(500);
      await vi.waitFor(() => expect(listener.open).toBe(0), { timeout: 3000 });
      expect(await countsSettle(before)).toStrictEqual(before);
    } finally {
      await listener.close();
    }
  });

  test('a signal that never aborts changes nothing', async () => {
    const controller = new AbortController();
    const { stdout } = await remctl(host, ['test', 'test'], { ...server, signal: controller.signal, encoding: 'utf8' });
    expect(stdout).toBe('hello world\n');
    controller.abort();
  });
});

describe('remctl() off the JavaScript thread', () => {
  test('one-shot calls made at once run in parallel, each on a thread of its own', async () => {
    const started = Date.now();
    const results = await Promise.all(
      [1, 2, 3, 4].map((n) => remctl(host, ['test', 'sleep', '1'], { ...server, encoding: 'utf8' }).then((r) => [n, r.stdout])),
    );
    expect(results).toEqual([1, 2, 3, 4].map((n) => [n, 'slept 1\n']));
    expect(Date.now() - started).toBeLessThan(2500);
  });

  test('the JavaScript thread keeps running while a call waits on the network', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 50);
    try {
      await remctl(host, ['test', 'sleep', '1'], server);
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThanOrEqual(10);
  });
});

describe('remctl() bad input', () => {
  test('a lone string or Buffer as the command is a TypeError that shows the array to pass', async () => {
    await expect(remctl(host, 'test test' as never, server)).rejects.toThrow(
      new TypeError('command must be an iterable of arguments, not a single string: pass ["test", "test"], not "test test"'),
    );
    await expect(remctl(host, Buffer.from('test test') as never, server)).rejects.toThrow(
      new TypeError('command must be an iterable of arguments, not a single Buffer: pass ["test", "test"], not "test test"'),
    );
  });

  // Each case is refused before any connection: the listener below would see one.
  const cases: Array<{ what: string; host?: unknown; command?: unknown; options: unknown; error: Error }> = [
    { what: 'an empty command', command: [], options: {}, error: new TypeError('command must not be empty') },
    {
      what: 'a number among the arguments',
      command: ['test', 5],
      options: {},
      error: new TypeError('command arguments must be strings or Buffers (command[1] is number 5)'),
    },
    { what: 'a null command', command: null, options: {}, error: new TypeError('command must be an iterable of strings or Buffers, got null') },
    { what: 'an empty host', host: '', options: {}, error: new TypeError('host must not be empty') },
    { what: 'a host that is not a string', host: 42, options: {}, error: new TypeError('host must be a string, got number 42') },
    { what: 'a negative port', options: { port: -1 }, error: new RangeError('invalid port number: -1') },
    { what: 'a port above 65535', options: { port: 65536 }, error: new RangeError('invalid port number: 65536') },
    { what: 'a fractional port', options: { port: 1.5 }, error: new TypeError('port must be an integer, got number 1.5') },
    { what: 'a port given as a string', options: { port: '4373' }, error: new TypeError('port must be an integer, got the string "4373"') },
    {
      what: 'a principal with a NUL byte',
      options: { principal: 'host/localhost\0@TEST.REMCTL' },
      error: new TypeError('principal must not contain a NUL byte'),
    },
    { what: 'an empty principal', options: { principal: '' }, error: new TypeError('principal must not be empty') },
    {
      what: 'a negative timeout',
      options: { timeout: -1 },
      error: new RangeError('timeout must be a whole number of milliseconds from 0 to 2147483647, got -1'),
    },
    {
      what: 'a fractional timeout',
      options: { timeout: 0.5 },
      error: new RangeError('timeout must be a whole number of milliseconds from 0 to 2147483647, got 0.5'),
    },
    {
      what: 'a timeout longer than a timer takes',
      options: { timeout: 2 ** 31 },
      error: new RangeError('timeout must be a whole number of milliseconds from 0 to 2147483647, got 2147483648'),
    },
    { what: 'a timeout given as a string', options: { timeout: '1' }, error: new TypeError('timeout must be a number of milliseconds, got the string "1"') },
    {
      what: 'a negative idleTimeout',
      options: { idleTimeout: -1 },
      error: new RangeError('idleTimeout must be a whole number of milliseconds from 0 to 2147483647, got -1'),
    },
    { what: 'an idleTimeout given as a string', options: { idleTimeout: '1s' }, error: new TypeError('idleTimeout must be a number of milliseconds, got the string "1s"') },
    {
      what: 'a fractional connectTimeout',
      options: { connectTimeout: 1.5 },
      error: new RangeError('connectTimeout must be a whole number of milliseconds from 0 to 2147483647, got 1.5'),
    },
    { what: 'a connectTimeout of null', options: { connectTimeout: null }, error: new TypeError('connectTimeout must be a number of milliseconds, got null') },
    { what: 'an empty ccache', options: { ccache: '' }, error: new TypeError('ccache must not be empty') },
    {
      what: 'a sourceIp that is not an address',
      options: { sourceIp: 'localhost' },
      error: new TypeError('sourceIp must be an IPv4 or IPv6 address, got the string "localhost"'),
    },
    {
      what: 'an unknown encoding',
      options: { encoding: 'utf-9' },
      error: new TypeError('encoding must be "buffer" or a Buffer encoding such as "utf8", got the string "utf-9"'),
    },
    {
      what: 'a maxBuffer of 0',
      options: { maxBuffer: 0 },
      error: new RangeError('maxBuffer must be a positive whole number of bytes or Infinity, got 0'),
    },
    {
      what: 'a maxBuffer given as a string',
      options: { maxBuffer: '1mb' },
      error: new TypeError('maxBuffer must be a number of bytes, got the string "1mb"'),
    },
    { what: 'a signal that is not an AbortSignal', options: { signal: {} }, error: new TypeError('signal must be an AbortSignal, got an object') },
    { what: 'options that are not an object', options: 'fast', error: new TypeError('options must be an object, got the string "fast"') },
    {
      what: 'a misspelt option',
      options: { timout: 1 },
      error: new TypeError('unknown option "timout" in options; did you mean "timeout"?'),
    },
    {
      what: 'an option remctl() does not have',
      options: { shell: true },
      error: new TypeError('unknown option "shell" in options; known options: '),
    },
  ];

  test.each(cases.map((bad) => [bad.what, bad] as const))('refuses %s before connecting, saying what was wrong', async (_what, bad) => {
    const listener = await silentServer();
    try {
      const options = typeof bad.options === 'object' && bad.options !== null ? { port: listener.port, ...bad.options } : bad.options;
      const call = remctl(
        (bad.host ?? host) as string,
        (bad.command === undefined ? ['test', 'test'] : bad.command) as string[],
        options as never,
      );
      const { error } = await rejection(call);
      expect(error).toBeInstanceOf(bad.error.constructor);
      if (bad.error.message.endsWith('known options: ')) {
        // The list names every option, whatever else the connection settings grow.
        const known = (error as Error).message.slice(bad.error.message.length).split(', ');
        expect((error as Error).message.startsWith(bad.error.message)).toBe(true);
        expect(known).toEqual(expect.arrayContaining(['timeout', 'ccache', 'sourceIp', 'port', 'principal', 'signal', 'encoding', 'maxBuffer']));
      } else {
        expect((error as Error).message).toBe(bad.error.message);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(listener.accepted).toBe(0);
    } finally {
      await listener.close();
    }
  });
});
