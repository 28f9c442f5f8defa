// The public types of the calls that run a command, as dist/index.d.ts declares them: what each
// returns, and how `encoding` turns stdout and stderr into strings.

import type { Readable } from 'node:stream';
import { describe, expectTypeOf, test } from 'vitest';
import {
  DEFAULT_MAX_BUFFER,
  Remctl,
  RemctlProcess,
  remctl,
  remctlSync,
  spawn,
  type RemctlOutput,
  type RemctlResult,
} from '../../dist/index.js';

declare const someEncoding: 'buffer' | BufferEncoding;

describe('remctl()', () => {
  test('resolves to Buffers by default and with encoding "buffer"', () => {
    expectTypeOf(remctl('h', ['c'])).resolves.toEqualTypeOf<RemctlResult<Buffer>>();
    expectTypeOf(remctl('h', ['c'], { timeout: 5000 })).resolves.toEqualTypeOf<RemctlResult<Buffer>>();
    expectTypeOf(remctl('h', ['c'], { encoding: 'buffer' })).resolves.toEqualTypeOf<RemctlResult<Buffer>>();
  });

  test('resolves to strings with a text encoding', () => {
    expectTypeOf(remctl('h', ['c'], { encoding: 'utf8' })).resolves.toEqualTypeOf<RemctlResult<string>>();
    expectTypeOf(remctl('h', ['c'], { encoding: 'latin1', port: 4373 })).resolves.toEqualTypeOf<RemctlResult<string>>();
  });

  test('resolves to either when the encoding is only known at run time', () => {
    expectTypeOf(remctl('h', ['c'], { encoding: someEncoding })).resolves.toEqualTypeOf<RemctlResult<string | Buffer>>();
  });

  test('a result has stdout, stderr and a numeric status', () => {
    expectTypeOf<RemctlResult>().toEqualTypeOf<{ stdout: Buffer; stderr: Buffer; status: number }>();
    expectTypeOf<RemctlResult<string>>().toEqualTypeOf<{ stdout: string; stderr: string; status: number }>();
  });

  test('takes any iterable of strings and bytes as the command', () => {
    expectTypeOf(remctl).toBeCallableWith('h', new Set(['a', 'b']));
    expectTypeOf(remctl).toBeCallableWith('h', ['a', Buffer.from([0]), new Uint8Array([1])]);
    expectTypeOf(remctl).toBeCallableWith('h', (function* () {
      yield Buffer.alloc(1);
    })());
  });
});

describe('remctlSync()', () => {
  test('returns the result itself, Buffers or strings as with remctl()', () => {
    expectTypeOf(remctlSync('h', ['c'])).toEqualTypeOf<RemctlResult<Buffer>>();
    expectTypeOf(remctlSync('h', ['c'], { encoding: 'buffer' })).toEqualTypeOf<RemctlResult<Buffer>>();
    expectTypeOf(remctlSync('h', ['c'], { encoding: 'utf8' })).toEqualTypeOf<RemctlResult<string>>();
    expectTypeOf(remctlSync('h', ['c'], { encoding: someEncoding })).toEqualTypeOf<RemctlResult<string | Buffer>>();
  });
});

describe('spawn()', () => {
  test('returns a RemctlProcess with two Readables and a Promise of the status', () => {
    const child = spawn('h', ['c'], { timeout: 1000, signal: AbortSignal.timeout(1000) });
    expectTypeOf(child).toEqualTypeOf<RemctlProcess>();
    expectTypeOf(child.stdout).toEqualTypeOf<Readable>();
    expectTypeOf(child.stderr).toEqualTypeOf<Readable>();
    expectTypeOf(child.status).toEqualTypeOf<Promise<number>>();
    expectTypeOf(child.abort).toEqualTypeOf<(reason?: unknown) => void>();
    expectTypeOf(child.kill).toEqualTypeOf<() => void>();
  });

  test("types the 'exit' and 'error' listeners", () => {
    const child = spawn('h', ['c']);
    child.on('exit', (status) => expectTypeOf(status).toEqualTypeOf<number>());
    child.on('error', (error) => expectTypeOf(error).toEqualTypeOf<Error>());
  });
});

describe('class Remctl', () => {
  test('connect() resolves to an opened Remctl, which is AsyncDisposable', () => {
    expectTypeOf(Remctl.connect('h', { port: 4373, idleTimeout: 5000, ccache: 'FILE:/tmp/cc' })).resolves.toEqualTypeOf<Remctl>();
    expectTypeOf<Remctl>().toExtend<AsyncDisposable>();
    expectTypeOf<Remctl['opened']>().toEqualTypeOf<boolean>();
  });

  test('run() follows encoding as remctl() does', () => {
    const r = new Remctl();
    expectTypeOf(r.run(['c'])).resolves.toEqualTypeOf<RemctlResult<Buffer>>();
    expectTypeOf(r.run(['c'], { encoding: 'utf8' })).resolves.toEqualTypeOf<RemctlResult<string>>();
    expectTypeOf(r.run(['c'], { encoding: someEncoding })).resolves.toEqualTypeOf<RemctlResult<string | Buffer>>();
  });

  test('output() resolves to a token and outputs() iterates tokens', () => {
    const r = new Remctl();
    expectTypeOf(r.output()).resolves.toEqualTypeOf<RemctlOutput>();
    expectTypeOf(r.outputs()).toEqualTypeOf<AsyncGenerator<RemctlOutput, void, undefined>>();
    expectTypeOf(r.spawn(['c'])).toEqualTypeOf<RemctlProcess>();
  });

  test('the rest resolve to nothing, error() is text and the setters are synchronous', () => {
    const r = new Remctl();
    expectTypeOf(r.open('h')).resolves.toBeVoid();
    expectTypeOf(r.command(['c'])).resolves.toBeVoid();
    expectTypeOf(r.noop()).resolves.toBeVoid();
    expectTypeOf(r.close()).resolves.toBeVoid();
    expectTypeOf(r.error()).toEqualTypeOf<string>();
    expectTypeOf(r.setIdleTimeout(1000)).toBeVoid();
    expectTypeOf(r.setConnectTimeout(1000)).toBeVoid();
    expectTypeOf(r.setCcache('FILE:/tmp/cc')).toBeVoid();
    expectTypeOf(r.setSourceIp('127.0.0.1')).toBeVoid();
  });
});

test('DEFAULT_MAX_BUFFER is a number', () => {
  expectTypeOf(DEFAULT_MAX_BUFFER).toEqualTypeOf<number>();
});
