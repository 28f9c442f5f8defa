// Options are checked by name and type: a misspelled option, or one the call does not take, is
// a compile error, as it is a TypeError at run time.

import { expectTypeOf, test } from 'vitest';
import {
  Remctl,
  remctl,
  remctlSync,
  spawn,
  type CallOptions,
  type ConnectOptions,
  type ConnectionSettings,
  type OpenOptions,
  type RemctlOptions,
  type RemctlSyncOptions,
  type RunOptions,
  type SpawnCallOptions,
  type SpawnOptions,
} from '../../dist/index.js';

test('the settings of a connection are its idle and connect timeouts, ticket cache, source address and open retries', () => {
  expectTypeOf<ConnectionSettings>().toEqualTypeOf<{
    idleTimeout?: number;
    connectTimeout?: number;
    ccache?: string;
    sourceIp?: string;
    openRetries?: number;
    openRetryDelay?: number;
  }>();
});

test('remctl() takes exactly the documented options', () => {
  expectTypeOf<keyof RemctlOptions>().toEqualTypeOf<keyof ConnectionSettings | 'port' | 'principal' | 'signal' | 'timeout' | 'encoding' | 'maxBuffer' | 'pool'>();
  expectTypeOf<RemctlOptions['timeout']>().toEqualTypeOf<number | undefined>();
  // @ts-expect-error: misspelled
  void remctl('h', ['c'], { tiemout: 5 });
  // @ts-expect-error: a port is a number
  void remctl('h', ['c'], { port: '4373' });
  // @ts-expect-error: not an encoding
  void remctl('h', ['c'], { encoding: 'utf-9' });
  // @ts-expect-error: a signal is an AbortSignal
  void remctl('h', ['c'], { signal: new AbortController() });
  // @ts-expect-error: a lone string is not a command
  void remctl('h', 'test test');
});

test('remctlSync() takes the options of remctl() but signal and pool', () => {
  expectTypeOf<keyof RemctlSyncOptions>().toEqualTypeOf<Exclude<keyof RemctlOptions, 'signal' | 'pool'>>();
  // @ts-expect-error: nothing to abort from while the thread is blocked
  void remctlSync('h', ['c'], { signal: AbortSignal.timeout(1) });
});

test('spawn() takes the options of remctl() but encoding, maxBuffer and pool (pool.spawn() is that)', () => {
  expectTypeOf<keyof SpawnOptions>().toEqualTypeOf<Exclude<keyof RemctlOptions, 'encoding' | 'maxBuffer' | 'pool'>>();
  // @ts-expect-error: streams carry Buffers
  void spawn('h', ['c'], { encoding: 'utf8' });
  // @ts-expect-error: nothing is collected
  void spawn('h', ['c'], { maxBuffer: 1 });
});

test('a Remctl is made with settings, connected with settings and where to open, and called with a signal (and run and spawn with a timeout)', () => {
  expectTypeOf<keyof OpenOptions>().toEqualTypeOf<'port' | 'principal' | 'signal'>();
  expectTypeOf<keyof ConnectOptions>().toEqualTypeOf<keyof ConnectionSettings | keyof OpenOptions>();
  expectTypeOf<keyof CallOptions>().toEqualTypeOf<'signal'>();
  expectTypeOf<keyof SpawnCallOptions>().toEqualTypeOf<'signal' | 'timeout'>();
  expectTypeOf<keyof RunOptions>().toEqualTypeOf<'signal' | 'timeout' | 'encoding' | 'maxBuffer'>();

  // @ts-expect-error: the port is given to open() or connect()
  void new Remctl({ port: 4373 });
  // @ts-expect-error: misspelled
  void Remctl.connect('h', { tiemout: 5 });
  const r = new Remctl({ idleTimeout: 5000, connectTimeout: 5000 });
  // @ts-expect-error: a setting of the connection, not of open()
  void r.open('h', { idleTimeout: 5000 });
  // @ts-expect-error: a setting of the connection, not of one run
  void r.run(['c'], { idleTimeout: 5000 });
  void r.run(['c'], { timeout: 5000 });
  // @ts-expect-error: a call's deadline, not a setting of the connection
  void new Remctl({ timeout: 5000 });
  // @ts-expect-error: noop() has no deadline of its own
  void r.noop({ timeout: 5000 });
  // @ts-expect-error: command() collects nothing
  void r.command(['c'], { encoding: 'utf8' });
});

test('a command is an iterable of strings and bytes', () => {
  // @ts-expect-error: numbers are not arguments
  void remctl('h', ['test', 1]);
  // @ts-expect-error: a host is a string
  void remctl(undefined, ['c']);
});
