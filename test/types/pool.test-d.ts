// RemctlPool: its options, the results of run() by encoding, spawn()'s process, stats, and
// remctl() with a pool.

import { expectTypeOf, test } from 'vitest';
import {
  RemctlPool,
  RemctlProcess,
  remctl,
  type ConnectionSettings,
  type RemctlPoolCallOptions,
  type RemctlPoolOptions,
  type RemctlPoolRunOptions,
  type RemctlPoolStats,
  type RemctlResult,
} from '../../dist/index.js';

test('a pool takes its own three options and the connection settings', () => {
  expectTypeOf<keyof RemctlPoolOptions>().toEqualTypeOf<keyof ConnectionSettings | 'connections' | 'keepAliveTimeout' | 'noopInterval'>();
  void new RemctlPool();
  void new RemctlPool({ connections: 8, keepAliveTimeout: 60_000, noopInterval: 300_000, ccache: 'FILE:/tmp/cc', connectTimeout: 5000 });
  // @ts-expect-error: misspelled
  void new RemctlPool({ conections: 8 });
  // @ts-expect-error: where to run belongs to each call
  void new RemctlPool({ port: 4373 });
});

test('a pooled call takes where to run and the call\'s own options; run() also the result\'s', () => {
  expectTypeOf<keyof RemctlPoolCallOptions>().toEqualTypeOf<'port' | 'principal' | 'ccache' | 'sourceIp' | 'signal' | 'timeout'>();
  expectTypeOf<keyof RemctlPoolRunOptions>().toEqualTypeOf<keyof RemctlPoolCallOptions | 'encoding' | 'maxBuffer'>();
  const pool = new RemctlPool();
  // @ts-expect-error: a setting of the pool's connections, not of a call
  void pool.run('h', ['c'], { idleTimeout: 1000 });
  // @ts-expect-error: streams carry Buffers
  void pool.spawn('h', ['c'], { encoding: 'utf8' });
});

test('run() resolves to Buffers by default and to strings with an encoding; spawn() returns a RemctlProcess', () => {
  const pool = new RemctlPool();
  expectTypeOf(pool.run('h', ['c'])).resolves.toEqualTypeOf<RemctlResult<Buffer>>();
  expectTypeOf(pool.run('h', ['c'], { encoding: 'utf8' })).resolves.toEqualTypeOf<RemctlResult<string>>();
  expectTypeOf(pool.spawn('h', ['c'])).toEqualTypeOf<RemctlProcess>();
  expectTypeOf(remctl('h', ['c'], { pool, encoding: 'utf8' })).resolves.toEqualTypeOf<RemctlResult<string>>();
});

test('stats are six numbers, read-only through the getter; close() and destroy() resolve to nothing', () => {
  const pool = new RemctlPool();
  expectTypeOf(pool.stats).toEqualTypeOf<RemctlPoolStats>();
  expectTypeOf<RemctlPoolStats>().toEqualTypeOf<{ connections: number; idle: number; busy: number; queued: number; opened: number; reused: number }>();
  // @ts-expect-error: read-only
  pool.stats = { connections: 0, idle: 0, busy: 0, queued: 0, opened: 0, reused: 0 };
  expectTypeOf(pool.close()).resolves.toBeVoid();
  expectTypeOf(pool.destroy()).resolves.toBeVoid();
  expectTypeOf(pool[Symbol.asyncDispose]()).resolves.toBeVoid();
});
