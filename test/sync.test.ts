// remctlSync(): remctl() for scripts, blocking like child_process.execFileSync. Every test runs
// against the realm's stock remctld.

import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, test } from 'vitest';
import {
  ERROR_ACCESS,
  ERROR_UNKNOWN_COMMAND,
  MaxBufferError,
  RemctlError,
  RemctlProtocolError,
  remctlSync,
} from '../dist/index.js';
import { realm } from './realm-context.mjs';
import { freePort } from './realm-control.mjs';
import { bigPattern } from './realm.mjs';

const settings = realm();
const { host } = settings;
const server = { port: settings.port, principal: settings.principal };

/** What fn threw, and how many milliseconds it took to. */
function thrown(fn: () => unknown): { error: unknown; ms: number } {
  const started = performance.now();
  try {
    fn();
  } catch (error) {
    return { error, ms: performance.now() - started };
  }
  throw new Error('expected the call to throw, but it returned');
}

const threadCount = () => readdirSync('/proc/self/task').length;

describe('remctlSync()', () => {
  test('returns stdout, stderr and status, as Buffers by default', () => {
    const result = remctlSync(host, ['test', 'echo', 'one', 'two words'], server);
    expect(result).toEqual({ stdout: Buffer.from('one\ntwo words\n'), stderr: Buffer.from('stderr line\n'), status: 0 });
    expect(Buffer.isBuffer(result.stdout)).toBe(true);
    expect(Buffer.isBuffer(result.stderr)).toBe(true);
  });

  test("with encoding 'utf8' returns strings", () => {
    expect(remctlSync(host, ['test', 'echo', 'naïve ☃'], { ...server, encoding: 'utf8' })).toEqual({
      stdout: 'naïve ☃\n',
      stderr: 'stderr line\n',
      status: 0,
    });
  });

  test('returns, rather than throws, the status of a command that exits non-zero', () => {
    expect(remctlSync(host, ['test', 'status', '3'], server)).toEqual({ stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), status: 3 });
    expect(remctlSync(host, ['test', 'stderr'], { ...server, encoding: 'utf8' })).toEqual({
      stdout: '',
      stderr: 'this is stderr\n',
      status: 2,
    });
  });

  test('passes every byte value through, in the arguments and in the output', () => {
    const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const data = Buffer.concat([everyByte, Buffer.from([0, 0, 0xff, 0]), everyByte]);
    const { stdout, status } = remctlSync(host, ['test', 'stdin', data], server);
    expect(status).toBe(0);
    expect(stdout.equals(data)).toBe(true);
  });

  test('returns 8 MiB of output whole', () => {
    const size = 8 * 1024 * 1024;
    const { stdout, status } = remctlSync(host, ['test', 'big', String(size)], server);
    expect(status).toBe(0);
    expect(stdout.equals(bigPattern(size))).toBe(true);
  });

  test('blocks the JavaScript thread until the command has finished, as execFileSync does', async () => {
    let fired = false;
    const timer = setTimeout(() => {
      fired = true;
    }, 0);
    const started = performance.now();
    const { stdout } = remctlSync(host, ['test', 'sleep', '1'], { ...server, encoding: 'utf8' });
    const ms = performance.now() - started;
    expect(stdout).toBe('slept 1\n');
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(fired).toBe(false);
    await sleep(10);
    expect(fired).toBe(true);
    clearTimeout(timer);
  });

  test('the ccache option selects the identity, and process.env.KRB5CCNAME stays as it was', () => {
    const before = process.env.KRB5CCNAME;
    const asOther = remctlSync(host, ['test', 'whoami'], { ...server, ccache: settings.otherCcache, encoding: 'utf8' });
    expect(asOther.stdout).toBe(`${settings.otherPrincipal}\n`);
    expect(remctlSync(host, ['test', 'whoami'], { ...server, encoding: 'utf8' }).stdout).toBe(`${settings.clientPrincipal}\n`);
    expect(process.env.KRB5CCNAME).toBe(before);
  });

  test('leaves no thread behind once it has returned or thrown', async () => {
    remctlSync(host, ['test', 'test'], server);
    const threads = threadCount();
    for (let i = 0; i < 5; i++) remctlSync(host, ['test', 'test'], server);
    thrown(() => remctlSync(host, ['test', 'bogus'], server));
    const deadline = Date.now() + 2000;
    while (threadCount() > threads && Date.now() < deadline) await sleep(20);
    expect(threadCount()).toBeLessThanOrEqual(threads);
  });
});

describe('remctlSync() failures', () => {
  test('an unknown command throws a RemctlProtocolError: code ERROR_UNKNOWN_COMMAND', () => {
    const { error } = thrown(() => remctlSync(host, ['test', 'bogus'], server));
    expect(error).toBeInstanceOf(RemctlProtocolError);
    expect(error).toMatchObject({ message: 'Unknown command', errorCode: ERROR_UNKNOWN_COMMAND, code: 'ERROR_UNKNOWN_COMMAND' });
  });

  test('a command the ACL refuses throws a RemctlProtocolError: code ERROR_ACCESS', () => {
    const { error } = thrown(() => remctlSync(host, ['restricted', 'x'], server));
    expect(error).toBeInstanceOf(RemctlProtocolError);
    expect(error).toMatchObject({ message: 'Access denied', errorCode: ERROR_ACCESS, code: 'ERROR_ACCESS' });
  });

  test("a closed port throws a RemctlError in libremctl's words", async () => {
    const closedPort = await freePort();
    const { error } = thrown(() => remctlSync(host, ['test', 'test'], { ...server, port: closedPort }));
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).not.toBeInstanceOf(RemctlProtocolError);
    expect((error as Error).message).toBe(`cannot connect to localhost (port ${closedPort}): Connection refused`);
  });

  test("the timeout option throws 'error receiving token: timed out' for a command silent for longer", () => {
    const { error, ms } = thrown(() => remctlSync(host, ['test', 'sleep', '3'], { ...server, idleTimeout: 1000 }));
    expect(error).toBeInstanceOf(RemctlError);
    expect((error as Error).message).toBe('error receiving token: timed out');
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(2500);
  });

  test('output beyond maxBuffer throws a MaxBufferError, and the next call works', () => {
    const { error } = thrown(() => remctlSync(host, ['test', 'big', '100000'], { ...server, maxBuffer: 1000 }));
    expect(error).toBeInstanceOf(MaxBufferError);
    expect(error).toMatchObject({
      code: 'ERR_REMCTL_MAXBUFFER',
      message: 'stdout and stderr exceeded maxBuffer (1000 bytes); the connection was closed',
    });
    expect(remctlSync(host, ['test', 'test'], { ...server, encoding: 'utf8' }).stdout).toBe('hello world\n');
  });
});

describe('remctlSync() options', () => {
  test('signal is not an option of remctlSync: passing one is a TypeError, thrown before the command runs', async () => {
    const marker = `sync-signal-${process.pid}-${Date.now()}`;
    const { error } = thrown(() =>
      remctlSync(host, ['test', 'echo', marker], { ...server, signal: new AbortController().signal } as never),
    );
    expect(error).toBeInstanceOf(TypeError);
    const message = (error as Error).message;
    expect(message).toMatch(/^unknown option "signal" in options; known options: /);
    const known = message.replace(/^.*known options: /, '').split(', ');
    expect(known).toEqual(expect.arrayContaining(['port', 'principal', 'timeout', 'ccache', 'sourceIp', 'encoding', 'maxBuffer']));
    expect(known).not.toContain('signal');
    // remctld logs every command it runs.
    await sleep(300);
    expect(await readFile(settings.remctldLog, 'utf8')).not.toContain(marker);
  });

  test('a misspelt option is a TypeError that suggests the right name', () => {
    const { error } = thrown(() => remctlSync(host, ['test', 'test'], { ...server, tiemout: 1 } as never));
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toBe('unknown option "tiemout" in options; did you mean "timeout"?');
  });

  test('bad option values are refused as remctl() refuses them', () => {
    expect(() => remctlSync(host, ['test', 'test'], { port: -1 })).toThrow(new RangeError('invalid port number: -1'));
    expect(() => remctlSync(host, ['test', 'test'], { ...server, encoding: 'utf-9' as never })).toThrow(
      new TypeError('encoding must be "buffer" or a Buffer encoding such as "utf8", got the string "utf-9"'),
    );
    expect(() => remctlSync(host, 'test test' as never, server)).toThrow(
      new TypeError('command must be an iterable of arguments, not a single string: pass ["test", "test"], not "test test"'),
    );
    expect(() => remctlSync(host, [], server)).toThrow(new TypeError('command must not be empty'));
  });
});
