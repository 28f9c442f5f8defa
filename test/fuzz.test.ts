// Bad input, property-based: fast-check throws random and hostile values at every public
// function and option (wrong types, huge and empty strings, NUL bytes, lone surrogates,
// negative and fractional numbers, NaN, Infinity, objects whose toString or getters throw,
// iterables that throw midway, 100 000 arguments). Every call must end in a TypeError, a
// RangeError or a RemctlError with a message of the library's own (or resolve, or reject with
// the reason of a signal it was given): never a crash, a hang or an unhandled rejection.
//
// Whatever looks valid is pointed at the realm's remctld or at a closed port on loopback; no
// host other than loopback is ever generated, and no descriptor but ones this file opened.

import { closeSync, openSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Remctl, RemctlError, RemctlProcess, _remctl, remctl, remctlSync, spawn } from '../dist/index.js';
import { realm } from './realm-context.mjs';
import { freePort } from './realm-control.mjs';

const settings = realm();

/** Errors of the engine itself: input that reached code which never checked it. */
const ENGINE_MESSAGE =
  /Cannot read propert|is not a function|is not iterable|Cannot convert|is not a constructor|undefined is not|null is not|Maximum call stack|Invalid array length|Cannot destructure|Cannot create property|^Invalid argument$/;

/**
 * Library bugs this file found, reported and tested on their own in the last describe block.
 * A failure that matches one of these is counted, not failed on, so that the properties keep
 * their power to find something new; the tests at the end fail until they are fixed.
 */
const KNOWN_BUGS: Array<{ name: string; matches: (error: unknown, fn: string) => boolean }> = [
  {
    name: 'a forged handle (Object.create of the handle prototype) gets a bare Error "Invalid argument"',
    matches: (error) => error instanceof Error && error.constructor === Error && error.message === 'Invalid argument',
  },
  {
    name: 'remctl_open_fd with a descriptor that is not open throws a bare Error',
    matches: (error, fn) => fn === 'remctl_open_fd' && error instanceof Error && error.constructor === Error && /^cannot duplicate descriptor: /.test(error.message),
  },
  {
    name: 'checkCommand reads command[Symbol.iterator] outside its try: a throwing getter escapes as itself',
    matches: (error) => error instanceof Error && error.message === 'hostile: Symbol.iterator getter',
  },
  {
    name: 'the validators use instanceof (Buffer.isBuffer, Uint8Array, AbortSignal) on values whose getPrototypeOf trap throws: the trap\'s error escapes',
    matches: (error) => error instanceof Error && error.message === 'hostile: getPrototypeOf trap',
  },
  {
    name: 'remctl_open_addrinfo and remctl_open_sockaddr let the errors of hostile iterables, getters and proxies through',
    matches: (error, fn) => (fn === 'remctl_open_addrinfo' || fn === 'remctl_open_sockaddr') && error instanceof Error && error.message.startsWith('hostile:'),
  },
];
const knownBugHits = new Map<string, number>();

/** How the calls ended, by function: to see that valid input does reach the server. */
const tally = new Map<string, Record<string, number>>();
function count(fn: string, how: string) {
  const row = tally.get(fn) ?? {};
  row[how] = (row[how] ?? 0) + 1;
  tally.set(fn, row);
}

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

let closedPort: number;
let devNull: number;
const sockets: Socket[] = [];
let realmSocketFd: number;
const HUGE = 'x'.repeat(1 << 20);
const HUNDRED_THOUSAND = ['test', 'echo', ...Array.from({ length: 100_000 }, () => 'a')];

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  closedPort = await freePort();
  devNull = openSync('/dev/null', 'r');
  const socket = connect({ host: '127.0.0.1', port: settings.port });
  socket.pause();
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  sockets.push(socket);
  realmSocketFd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
});

afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
  closeSync(devNull);
  for (const socket of sockets) socket.destroy();
  console.info(`how the calls ended:\n${[...tally].map(([fn, row]) => `  ${fn}: ${JSON.stringify(row)}`).join('\n')}`);
  if (knownBugHits.size > 0) console.info(`known bugs hit: ${JSON.stringify(Object.fromEntries(knownBugHits))}`);
});

// ---------------------------------------------------------------------------------------------
// Values

/** An error every hostile object throws, recognisable when it leaks through. */
const hostileError = (where: string) => new Error(`hostile: ${where}`);

/**
 * Gives a hostile object a name fast-check can print it by, so that reporting a counterexample
 * does not itself trip over the getters and traps meant for the library.
 */
function labelled<T>(label: string, make: () => T): () => T {
  return () => {
    const value = make();
    if ((typeof value === 'object' && value !== null) || typeof value === 'function') {
      Object.defineProperty(value, fc.toStringMethod, { value: () => label, enumerable: false });
    }
    return value;
  };
}

/** A proxy whose every trap throws, but which fast-check can still print. */
function throwingProxy(): object {
  const target = Object.defineProperty({}, fc.toStringMethod, { value: () => 'throwingProxy', enumerable: false });
  return new Proxy(target, {
    // No `has` trap: fast-check itself asks `in` of every value it generates.
    get: (object, key) => {
      if (key === fc.toStringMethod) return (object as Record<symbol, unknown>)[key];
      throw hostileError('get trap');
    },
    ownKeys: () => {
      throw hostileError('ownKeys trap');
    },
    getOwnPropertyDescriptor: () => {
      throw hostileError('getOwnPropertyDescriptor trap');
    },
    getPrototypeOf: () => {
      throw hostileError('getPrototypeOf trap');
    },
  });
}

/** Iterables that misbehave, each made fresh (a generator can only be iterated once). */
const hostileIterables: Array<() => unknown> = ([
  () => ({
    *[Symbol.iterator]() {
      yield 'test';
      throw hostileError('iterator midway');
    },
  }),
  () => ({
    [Symbol.iterator]() {
      throw hostileError('Symbol.iterator');
    },
  }),
  () => ({ [Symbol.iterator]: 42 }),
  () => ({
    [Symbol.iterator]() {
      return { next: () => 42 };
    },
  }),
  () => ({
    [Symbol.iterator]() {
      return {
        next: () => ({
          done: false,
          get value() {
            throw hostileError('value getter');
          },
        }),
      };
    },
  }),
  () => ({
    get [Symbol.iterator]() {
      throw hostileError('Symbol.iterator getter');
    },
  }),
  () => Object.defineProperty(['test', 'x'], 1, {
    get() {
      throw hostileError('index getter');
    },
  }),
  () => new Set(['test', 'test']),
  () => new Map([['test', 'test']]),
] as Array<() => unknown>).map((make, i) => labelled(`hostileIterable${i}`, make));

/** Objects that misbehave whenever they are looked at. */
const hostileObjects: Array<() => unknown> = ([
  () => ({
    toString() {
      throw hostileError('toString');
    },
    valueOf() {
      throw hostileError('valueOf');
    },
  }),
  () => ({
    [Symbol.toPrimitive]() {
      throw hostileError('toPrimitive');
    },
  }),
  throwingProxy,
  () => new Proxy({ timeout: 1, port: 1, address: '127.0.0.1' }, {}),
  () => Object.create(null),
  () => ({
    get timeout() {
      throw hostileError('timeout getter');
    },
    get port() {
      throw hostileError('port getter');
    },
    get address() {
      throw hostileError('address getter');
    },
    get signal() {
      throw hostileError('signal getter');
    },
  }),
  () => ({ address: '127.0.0.1', port: 0 }),
  () => ({ address: 'localhost', port: 4373 }),
  () => ({ address: '127.0.0.1', port: closedPort }),
  () => ({ closed: false, open: () => Promise.resolve(undefined) }),
  () => Object.create(Object.getPrototypeOf(_remctl.remctl_new())),
  () => function named() {},
  () => class {},
  () => Symbol('hostile'),
  () => 10n,
  () => new Date(Number.NaN),
  () => /regexp/,
  () => Promise.resolve('test'),
  () => new WeakMap(),
  () => new ArrayBuffer(8),
  () => new Uint16Array([1, 2]),
  () => new Float64Array(2),
  () => new DataView(new ArrayBuffer(4)),
  () => {
    const buffer = new ArrayBuffer(8);
    const view = new Uint8Array(buffer);
    structuredClone(buffer, { transfer: [buffer] });
    return view;
  },
  () => [, 'test'], // eslint-disable-line no-sparse-arrays
  () => new Array(3),
  () => ['test', undefined],
  () => AbortSignal.abort(),
  () => new AbortController().signal,
  () => ({ aborted: false, addEventListener() {} }),
] as Array<() => unknown>)
  .map((make, i) => (make === throwingProxy ? make : labelled(`hostileObject${i}`, make)))
  .concat(hostileIterables);

const hostileStrings = ['', '\0', 'a\0b', '\uD800', '\uDFFFx', '\u{10FFFF}', ' ', '\n', 'ü', HUGE, `${HUGE}\0`, 'localhost\0evil.example'];
const hostileNumbers = [
  0, -0, 1, -1, 0.5, 1.5, Number.NaN, Infinity, -Infinity, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), Number.MAX_VALUE,
  Number.MIN_VALUE, 65535, 65536, 2_000_000, 2_000_001,
];

/** Anything at all, weighted towards what is most likely to break something. */
const hostile = fc.oneof(
  fc.constantFrom(...hostileStrings),
  fc.constantFrom(...hostileNumbers),
  fc.constantFrom(undefined, null, true, false),
  fc.constantFrom(...hostileObjects).map((make) => make()),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.double(),
  fc.integer(),
  fc.anything({ maxDepth: 2 }),
);

/** Valid most of the time, hostile the rest. */
const either = <T>(valid: fc.Arbitrary<T>) => fc.oneof({ weight: 3, arbitrary: valid as fc.Arbitrary<unknown> }, { weight: 2, arbitrary: hostile });

const argument = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.uint8Array({ maxLength: 30 }),
  fc.constantFrom('test', 'echo', '', '\0', '\uD800', '$(id)', HUGE),
);

// Never `test sleep`, `test big` or `test lines`: they take time (or memory) whatever the input.
const validCommand = fc.oneof(
  fc.constant(['test', 'test']),
  fc.array(argument, { maxLength: 6 }).map((args) => ['test', 'echo', ...args]),
  fc.integer({ min: 0, max: 255 }).map((status) => ['test', 'status', String(status)]),
  fc.uint8Array({ maxLength: 64 }).map((data) => ['test', 'stdin', data]),
  fc.constantFrom(['test', 'whoami'], ['test', 'stderr'], ['restricted', 'x'], ['no-such-command'], HUNDRED_THOUSAND, ['test', 'echo', HUGE]),
  fc.array(argument, { minLength: 1, maxLength: 4 }),
);

/** A slot of a call: what is valid there, and that or anything at all. */
interface Slot {
  valid: fc.Arbitrary<unknown>;
  any: fc.Arbitrary<unknown>;
}
const slot = (valid: fc.Arbitrary<unknown>): Slot => ({ valid, any: either(valid) });

/**
 * The arguments of a call: half the time every slot valid (so that the call reaches the server
 * and must succeed or fail there), the other half each slot valid or hostile.
 */
const call = (...slots: Slot[]) =>
  fc.oneof(fc.tuple(...slots.map((each) => each.valid)), fc.tuple(...slots.map((each) => each.any))) as fc.Arbitrary<unknown[]>;

// The closed port is only known once beforeAll has run, after the arbitraries are made.
const PORTS = fc.constantFrom('realm', 'realm', 'realm', 'closed', 0).map((which) => (which === 'realm' ? settings.port : which === 'closed' ? closedPort : 0));

const command = slot(validCommand);
// Weighted towards what works, so that valid calls often get all the way to a result.
const host = slot(fc.constantFrom('localhost', 'localhost', '127.0.0.1', '::1'));
const port = slot(PORTS);
const principal = slot(fc.constantFrom(undefined, null, settings.principal, settings.principal, settings.principal, `host/nobody@${settings.realm}`, settings.otherServicePrincipal));
const ccache = slot(fc.constantFrom(settings.ccache, settings.ccache, settings.otherCcache, `FILE:${settings.dir}/fuzz-missing.ccache`));
const sourceIp = slot(fc.constantFrom('127.0.0.1', '127.0.0.1', 'any', 'all', '::1', '192.0.2.1'));
// Seconds for the C-shaped remctl_set_timeout; milliseconds everywhere else.
const seconds = slot(fc.constantFrom(0, 1, 2, 3));
const ms = slot(fc.constantFrom(0, 1000, 2000, 3000));
const signal = slot(
  fc.constantFrom('none', 'none', 'none', 'aborted', 'never', 'soon').map((kind) => {
    if (kind === 'aborted') return AbortSignal.abort();
    if (kind === 'never') return new AbortController().signal;
    if (kind === 'soon') return AbortSignal.timeout(5);
    return undefined;
  }),
);
const encoding = slot(fc.constantFrom('utf8', 'buffer', 'hex', 'latin1', 'base64'));
const maxBuffer = slot(fc.constantFrom(1, 10, 1000, 1 << 20, Infinity));

/** An options object made of these keys (each present or not); or, as `any`, also misspelt keys or something else entirely. */
function options(keys: Record<string, Slot>): Slot {
  const pick = (which: 'valid' | 'any') => fc.record(Object.fromEntries(Object.entries(keys).map(([key, each]) => [key, each[which]])), { requiredKeys: [] });
  const misspelt = fc.tuple(pick('any'), fc.constantFrom('tiemout', 'Port', 'shell', '__proto__', 'constructor', 'utf-9')).map(([values, key]) => ({
    ...values,
    [key]: 1,
  }));
  return {
    valid: pick('valid'),
    any: fc.oneof({ weight: 6, arbitrary: pick('any') as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: misspelt }, { weight: 2, arbitrary: hostile }),
  };
}

const settingKeys = { idleTimeout: ms, connectTimeout: ms, ccache, sourceIp };
const openKeys = { port, principal, signal };

// ---------------------------------------------------------------------------------------------
// The check

const CALL_TIMEOUT_MS = 20_000;

/** The signals among a call's arguments, however deep: their reasons are fair rejections. */
function signalsIn(value: unknown, seen = new Set<unknown>()): AbortSignal[] {
  try {
    if (value instanceof AbortSignal) return [value];
    if (typeof value !== 'object' || value === null || seen.has(value)) return [];
    seen.add(value);
    const prototype = Object.getPrototypeOf(value);
    if (prototype !== Object.prototype && prototype !== null && !Array.isArray(value)) return [];
    return Object.values(value).flatMap((inner) => signalsIn(inner, seen));
  } catch {
    // A proxy or getter that throws holds no signal the call could have used.
    return [];
  }
}

/** Whether a value is a handle that is still open, asked without trusting it. */
function isOpenHandle(r: unknown): boolean {
  try {
    return r instanceof Object && (r as { closed?: unknown }).closed === false;
  } catch {
    return false;
  }
}

/** Checks what a call threw or rejected with. */
function checkError(error: unknown, fn: string, args: unknown[]) {
  if (signalsIn(args).some((signal) => signal.aborted && signal.reason === error)) {
    count(fn, 'signal');
    return;
  }
  const bug = KNOWN_BUGS.find((known) => known.matches(error, fn));
  if (bug) {
    knownBugHits.set(bug.name, (knownBugHits.get(bug.name) ?? 0) + 1);
    count(fn, 'known bug');
    return;
  }
  count(fn, error instanceof Error ? error.constructor.name : typeof error);
  const what = `${fn}(${args.map(show).join(', ')}) failed with ${show(error)}`;
  expect(error instanceof TypeError || error instanceof RangeError || error instanceof RemctlError, what).toBe(true);
  const message = (error as Error).message;
  expect(typeof message === 'string' && message.length > 0, what).toBe(true);
  expect(message, what).not.toMatch(ENGINE_MESSAGE);
}

function show(value: unknown): string {
  try {
    if (value instanceof Error) return `${value.constructor.name}: ${value.message}`;
    if (typeof value === 'string') return JSON.stringify(value.length > 30 ? `${value.slice(0, 30)}…(${value.length})` : value);
    if (Array.isArray(value)) return value.length > 6 ? `[${value.length} items]` : `[${value.map(show).join(', ')}]`;
    if (typeof value === 'object' && value !== null) return Object.prototype.toString.call(value);
    return String(value);
  } catch {
    return typeof value;
  }
}

/** Runs one call to its end (a hang fails the test) and checks how it ended. */
async function settle(fn: string, args: unknown[], call: () => unknown): Promise<unknown> {
  let value: unknown;
  try {
    value = call();
  } catch (error) {
    checkError(error, fn, args);
    return undefined;
  }
  if (value instanceof RemctlProcess) {
    value.stdout.resume();
    value.stderr.resume();
    value = value.status;
  }
  if (typeof (value as PromiseLike<unknown>)?.then !== 'function') {
    count(fn, 'returned');
    return value;
  }
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<{ hang: true }>((resolve) => {
    timer = setTimeout(() => resolve({ hang: true }), CALL_TIMEOUT_MS);
  });
  const outcome = await Promise.race([
    (value as Promise<unknown>).then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    ),
    hang,
  ]);
  clearTimeout(timer);
  expect('hang' in outcome, `${fn}(${args.map(show).join(', ')}) neither resolved nor rejected in ${CALL_TIMEOUT_MS} ms`).toBe(false);
  if ('error' in outcome) checkError(outcome.error, fn, args);
  else count(fn, 'resolved');
  return 'result' in outcome ? outcome.result : undefined;
}

/** The bytes a command's argument is sent as; undefined for anything but a string or bytes. */
function bytesOf(part: unknown): Buffer | undefined {
  if (typeof part === 'string') return Buffer.from(part, 'utf8');
  if (part instanceof Uint8Array) return Buffer.from(part);
  return undefined;
}

interface Outcome {
  stdout: Buffer;
  stderr: Buffer;
  status: number;
}

/**
 * The results the realm's remctld (test/realm/test-command) can give for a command: none for one
 * it refuses, undefined for one whose output this cannot tell. Each is made of the command's
 * own bytes, so that a call resolving with the output of another command fails.
 */
function resultsOf(command: unknown): Outcome[] | undefined {
  let parts: Array<Buffer | undefined>;
  try {
    if (!Array.isArray(command)) return undefined;
    parts = command.map(bytesOf);
  } catch {
    return undefined;
  }
  if (parts.length === 0 || parts.some((part) => part === undefined)) return undefined;
  const [service, subcommand, ...rest] = (parts as Buffer[]).map((part) => part.toString('latin1'));
  const outcome = (stdout: string | Buffer, stderr = '', status = 0): Outcome => ({ stdout: Buffer.from(stdout), stderr: Buffer.from(stderr), status });
  if (service === 'restricted') return [outcome('restricted ok\n')];
  if (service !== 'test') return [];
  const args = (parts as Buffer[]).slice(2);
  // An argument too long for the kernel (HUGE is 1 MiB): remctld reports it as the command's own.
  const unexecutable = outcome('', 'remctld: cannot execute command: Argument list too long\n', 255);
  const ran = (result: Outcome) => [result, unexecutable];
  switch (subcommand) {
    case 'test':
      return ran(outcome('hello world\n'));
    case 'echo':
      return ran(outcome(Buffer.concat(args.flatMap((arg) => [arg, Buffer.from('\n')])), 'stderr line\n'));
    case 'status':
      return rest.length === 1 && /^\d+$/.test(rest[0]!) && Number(rest[0]) <= 255 ? ran(outcome('', '', Number(rest[0]))) : undefined;
    case 'stdin':
      return args.length === 1 ? ran(outcome(args[0]!)) : undefined;
    case 'stderr':
      return ran(outcome('', 'this is stderr\n', 2));
    case 'whoami':
      return [...ran(outcome(`${settings.clientPrincipal}\n`)), outcome(`${settings.otherPrincipal}\n`)];
    case 'sleep':
    case 'big':
    case 'lines':
    case 'killed':
    case 'stdinsize':
      return undefined;
    default:
      return [];
  }
}

/** The encoding a run asked for; its result is Buffers without one. */
function encodingOf(options: unknown): BufferEncoding {
  try {
    const encoding = (options as { encoding?: unknown } | undefined)?.encoding;
    return typeof encoding === 'string' && encoding !== 'buffer' ? (encoding as BufferEncoding) : 'utf8';
  } catch {
    return 'utf8';
  }
}

/** Checks that a call that resolved holds its own command's output and status, and nothing else. */
function checkOwnResult(fn: string, command: unknown, options: unknown, result: unknown) {
  const results = resultsOf(command);
  if (results === undefined || typeof result !== 'object' || result === null) return;
  const { stdout, stderr, status } = result as { stdout: unknown; stderr: unknown; status: unknown };
  const encoding = encodingOf(options);
  const as = (bytes: Buffer) => (typeof stdout === 'string' ? bytes.toString(encoding) : bytes);
  const shown = (value: unknown) => show(Buffer.isBuffer(value) ? value.toString('latin1') : value);
  const same = (mine: string | Buffer, got: unknown) => (typeof mine === 'string' ? mine === got : Buffer.isBuffer(got) && mine.equals(got));
  const own = results.some((result) => same(as(result.stdout), stdout) && same(as(result.stderr), stderr) && result.status === status);
  const what = `${fn}(${show(command)}) resolved with ${shown(stdout)}, ${shown(stderr)}, status ${show(status)}: not its own command's result`;
  expect(own, what).toBe(true);
  count(fn, 'own result');
}

// About 25 seconds here; FUZZ_RUNS=40 for a long run.
const RUNS = Number(process.env.FUZZ_RUNS ?? 4);
const runs = (n: number) => ({ numRuns: Math.max(1, Math.round(n * RUNS)), endOnFailure: true });

// ---------------------------------------------------------------------------------------------
// The properties

describe('the one-shot calls', () => {
  test('remctl(host, command, options) ends in its own command\'s result or a TypeError, RangeError or RemctlError', async () => {
    const keys = { ...settingKeys, ...openKeys, timeout: ms, encoding, maxBuffer };
    await fc.assert(
      fc.asyncProperty(call(host, command, options(keys)), async (args) => {
        const result = await settle('remctl', args, () => remctl(...(args as Parameters<typeof remctl>)));
        checkOwnResult('remctl', args[1], args[2], result);
      }),
      runs(150),
    );
  });

  test('remctlSync(host, command, options) returns a result or throws a TypeError, RangeError or RemctlError', async () => {
    const keys = { ...settingKeys, port, principal, timeout: ms, encoding, maxBuffer };
    await fc.assert(
      fc.asyncProperty(call(host, command, options(keys)), async (args) => {
        await settle('remctlSync', args, () => remctlSync(...(args as Parameters<typeof remctlSync>)));
      }),
      runs(100),
    );
  });

  test('spawn(host, command, options) ends in an exit status or a TypeError, RangeError or RemctlError', async () => {
    const keys = { ...settingKeys, ...openKeys, timeout: ms };
    await fc.assert(
      fc.asyncProperty(call(host, command, options(keys)), async (args) => {
        await settle('spawn', args, () => spawn(...(args as Parameters<typeof spawn>)));
      }),
      runs(100),
    );
  });
});

describe('the Remctl class', () => {
  test('new Remctl(options) and Remctl.connect(host, options) end in a connection or a TypeError, RangeError or RemctlError', async () => {
    await fc.assert(
      fc.asyncProperty(call(options(settingKeys), host, options({ ...settingKeys, ...openKeys })), async ([constructorOptions, connectHost, connectOptions]) => {
        const made = await settle('new Remctl', [constructorOptions], () => new Remctl(constructorOptions as never));
        if (made instanceof Remctl) await made.close();
        const connected = await settle('Remctl.connect', [connectHost, connectOptions], () => Remctl.connect(connectHost as never, connectOptions as never));
        if (connected instanceof Remctl) await connected.close();
      }),
      runs(100),
    );
  });

  // Every method, in random order, some calls awaited and some left running alongside the next.
  const named = (name: string, ...slots: Slot[]) => call(...slots).map((args) => [name, ...args] as [string, ...unknown[]]);
  const method = fc.oneof(
    named('open', host, options(openKeys)),
    named('setCcache', ccache),
    named('setSourceIp', sourceIp),
    named('setIdleTimeout', ms),
    named('setConnectTimeout', ms),
    named('command', command, options({ signal })),
    named('output', options({ signal })),
    named('outputs', options({ signal })),
    named('run', command, options({ signal, encoding, maxBuffer })),
    named('run', command, options({ signal, timeout: ms, encoding, maxBuffer })),
    named('spawn', command, options({ signal, timeout: ms })),
    named('noop', options({ signal })),
    named('error'),
    named('close'),
  );

  test('every method, called in any order with any arguments, ends in a result or a TypeError, RangeError or RemctlError, and every run() resolves with its own command\'s output', async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(fc.tuple(method, fc.boolean()), { maxLength: 10 }), async (connected, calls) => {
        const connection = connected
          ? await Remctl.connect(settings.host, { port: settings.port, principal: settings.principal })
          : new Remctl();
        const running: Promise<unknown>[] = [];
        for (const [[name, ...args], alongside] of calls) {
          const call =
            name === 'outputs'
              ? async () => {
                  let count = 0;
                  for await (const token of connection.outputs(args[0] as never)) if (++count > 1000 || token.type !== 'output') break;
                }
              : () => (connection as unknown as Record<string, (...values: unknown[]) => unknown>)[name]!(...args);
          // Whatever else went on, a run that resolves holds its own command's output.
          const settled = settle(`Remctl#${name}`, args, call).then((result) => {
            if (name === 'run') checkOwnResult('Remctl#run', args[0], args[1], result);
          });
          if (alongside) running.push(settled);
          else await settled;
        }
        await Promise.all(running);
        await settle('Remctl#close', [], () => connection.close());
      }),
      runs(120),
    );
  });
});

describe('the C API, _remctl', () => {
  /** A handle in any state: fresh, opened, or closed already; or something else entirely. */
  const handleKind = fc.constantFrom('fresh', 'opened', 'opened', 'closed', 'hostile');
  // Boxed: resolving a promise with a hostile object would read its `then`.
  async function makeHandle(kind: string, other: unknown): Promise<{ r: unknown }> {
    if (kind === 'hostile') return { r: other };
    const r = _remctl.remctl_new();
    if (kind === 'opened') expect(await _remctl.remctl_open(r, settings.host, settings.port, settings.principal)).toBe(true);
    if (kind === 'closed') await _remctl.remctl_close(r);
    return { r };
  }
  async function release(r: unknown) {
    if (isOpenHandle(r)) {
      try {
        await _remctl.remctl_close(r as never);
      } catch {
        // Not a handle after all.
      }
    }
  }

  // Never 0, 1, 2 or any other descriptor of this process (vitest's channel...) but these.
  const safeFd = (value: unknown) => (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < 100_000 ? 987_654 : value);
  const fd: Slot = {
    valid: fc.constantFrom('realm socket', '/dev/null', 'closed').map((kind) => (kind === 'realm socket' ? realmSocketFd : kind === '/dev/null' ? devNull : 987_654)),
    any: fc.oneof(
      fc.constantFrom('realm socket', '/dev/null').map((kind) => (kind === 'realm socket' ? realmSocketFd : devNull)),
      hostile.map(safeFd),
    ),
  };
  const anAddress = PORTS.chain((at) => fc.constantFrom({ address: '127.0.0.1', port: at }, { address: '::1', port: at }));
  const address = slot(anAddress);
  const addresses = slot(fc.array(anAddress, { minLength: 1, maxLength: 3 }));
  const hostOrNull = slot(fc.constantFrom(null, 'localhost'));

  const functions: Record<string, fc.Arbitrary<unknown[]>> = {
    remctl: call(host, port, principal, command),
    remctl_open: call(host, port, principal),
    remctl_open_addrinfo: call(hostOrNull, addresses, principal),
    remctl_open_sockaddr: call(hostOrNull, address, principal),
    remctl_open_fd: call(hostOrNull, fd, principal),
    remctl_set_ccache: call(ccache),
    remctl_set_source_ip: call(sourceIp),
    remctl_set_timeout: call(seconds),
    remctl_command: call(command),
    remctl_commandv: call(command),
    remctl_output: fc.constant([]),
    remctl_noop: fc.constant([]),
    remctl_error: fc.constant([]),
    remctl_close: fc.constant([]),
  };

  test('remctl_new() always returns a handle that closes', async () => {
    for (let i = 0; i < 20; i++) await _remctl.remctl_close(_remctl.remctl_new());
  });

  test.each(Object.keys(functions))('%s ends in a result or a TypeError, RangeError or RemctlError, whatever it is given', async (name) => {
    const fn = (_remctl as unknown as Record<string, (...args: unknown[]) => unknown>)[name]!;
    const takesHandle = name !== 'remctl';
    await fc.assert(
      fc.asyncProperty(handleKind, hostile, functions[name]!, fc.boolean(), async (kind, other, args, thenOutput) => {
        if (!takesHandle) {
          await settle(name, args, () => fn(...args));
          return;
        }
        const { r } = await makeHandle(kind, other);
        try {
          await settle(name, [r, ...args], () => fn(r, ...args));
          // What the handle says next must still make sense.
          if (thenOutput && isOpenHandle(r)) {
            await settle('remctl_output', [r], () => _remctl.remctl_output(r as never));
            await settle('remctl_error', [r], () => _remctl.remctl_error(r as never));
          }
        } finally {
          await release(r);
        }
      }),
      runs(name === 'remctl' ? 100 : 60),
    );
  });
});

test('no promise was left to reject unhandled', () => {
  expect(unhandled).toStrictEqual([]);
});

// ---------------------------------------------------------------------------------------------
// What the properties found: each a library bug, tested on its own (see KNOWN_BUGS).

describe('found by fuzzing', () => {
  test('a forged handle, made with Object.create from a real one\'s prototype, is refused with the TypeError that names r', async () => {
    const forged = Object.create(Object.getPrototypeOf(_remctl.remctl_new()));
    for (const call of [
      () => _remctl.remctl_error(forged),
      () => _remctl.remctl_open(forged, settings.host, settings.port, settings.principal),
      () => _remctl.remctl_commandv(forged, ['test', 'test']),
      () => _remctl.remctl_close(forged),
    ]) {
      let error: unknown;
      try {
        await call();
      } catch (thrown) {
        error = thrown;
      }
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toBe('r must be a remctl handle from remctl_new()');
    }
  });

  test('a command whose Symbol.iterator getter throws is refused with a TypeError, as one whose iterator throws is', async () => {
    const command = {
      get [Symbol.iterator](): () => Iterator<string> {
        throw hostileError('Symbol.iterator getter');
      },
    };
    for (const call of [
      () => remctl(settings.host, command, { port: settings.port }),
      () => remctlSync(settings.host, command, { port: settings.port }),
      () => spawn(settings.host, command, { port: settings.port }),
      () => _remctl.remctl_commandv(_remctl.remctl_new(), command),
    ]) {
      let error: unknown;
      try {
        await call();
      } catch (thrown) {
        error = thrown;
      }
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toBe('command could not be iterated: hostile: Symbol.iterator getter');
    }
  });

  test('a value whose getPrototypeOf trap throws, given as an option or argument, is refused with a TypeError that names it', async () => {
    for (const [what, call] of [
      ['timeout', () => remctl(settings.host, ['test', 'test'], { port: settings.port, timeout: throwingProxy() as never })],
      ['signal', () => remctl(settings.host, ['test', 'test'], { port: settings.port, signal: throwingProxy() as never })],
      ['command', () => remctl(settings.host, throwingProxy() as never, { port: settings.port })],
      ['source', () => _remctl.remctl_set_source_ip(_remctl.remctl_new(), throwingProxy() as never)],
      ['r', () => _remctl.remctl_error(throwingProxy() as never)],
    ] as const) {
      let error: unknown;
      try {
        await call();
      } catch (thrown) {
        error = thrown;
      }
      expect({ what, isTypeError: error instanceof TypeError }).toStrictEqual({ what, isTypeError: true });
      expect((error as Error).message.startsWith(what), (error as Error).message).toBe(true);
    }
  });

  test('remctl_open_fd with a descriptor that is not open throws a RangeError (or fails like any open), not a bare Error', async () => {
    const r = _remctl.remctl_new();
    try {
      let outcome: unknown;
      try {
        outcome = await _remctl.remctl_open_fd(r, 'localhost', 987_654, settings.principal);
      } catch (error) {
        outcome = error;
      }
      if (outcome === false) expect(_remctl.remctl_error(r)).toMatch(/Bad file descriptor/);
      else expect(outcome).toBeInstanceOf(RangeError);
    } finally {
      await _remctl.remctl_close(r);
    }
  });

  test('remctl_open_addrinfo and remctl_open_sockaddr refuse hostile iterables, getters and proxies with a TypeError that names the argument', async () => {
    const r = _remctl.remctl_new();
    try {
      for (const call of [
        () =>
          _remctl.remctl_open_addrinfo(
            r,
            'localhost',
            {
              *[Symbol.iterator]() {
                yield { address: '127.0.0.1', port: settings.port };
                throw hostileError('iterator midway');
              },
            },
            settings.principal,
          ),
        () =>
          _remctl.remctl_open_addrinfo(
            r,
            'localhost',
            [
              {
                get address(): string {
                  throw hostileError('address getter');
                },
                port: 1,
              },
            ],
            settings.principal,
          ),
        () =>
          _remctl.remctl_open_sockaddr(
            r,
            'localhost',
            new Proxy({} as { address: string; port: number }, {
              get() {
                throw hostileError('get trap');
              },
            }),
            settings.principal,
          ),
      ]) {
        let error: unknown;
        try {
          await call();
        } catch (thrown) {
          error = thrown;
        }
        expect(error).toBeInstanceOf(TypeError);
        expect((error as Error).message).toMatch(/^address(es)?\b/);
      }
    } finally {
      await _remctl.remctl_close(r);
    }
  });

  test('remctl_set_timeout with a timeout no time_t holds (1e300) is refused with a RangeError, as a timeout option above 2000000 is', async () => {
    const r = _remctl.remctl_new();
    try {
      let error: unknown;
      let returned: unknown;
      try {
        returned = _remctl.remctl_set_timeout(r, 1e300);
      } catch (thrown) {
        error = thrown;
      }
      expect({ returned, error: error instanceof RangeError }).toStrictEqual({ returned: undefined, error: true });
    } finally {
      await _remctl.remctl_close(r);
    }
  });
});
