// The connection class, Remctl: several commands over one authenticated session, against the
// realm's stock remctld. Tests that stop or restart a remctld (or kill one of its processes)
// do it to a remctld of their own, serving the same realm from another port, so that test files
// running alongside never see the shared one go away.

import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import {
  ERROR_ACCESS,
  ERROR_BAD_COMMAND,
  ERROR_BAD_TOKEN,
  ERROR_INTERNAL,
  ERROR_NO_HELP,
  ERROR_TOOMANY_ARGS,
  ERROR_TOOMUCH_DATA,
  ERROR_UNEXPECTED_MESSAGE,
  ERROR_UNKNOWN_COMMAND,
  ERROR_UNKNOWN_MESSAGE,
  MaxBufferError,
  Remctl,
  RemctlError,
  RemctlNotOpenedError,
  RemctlProtocolError,
  type RemctlOutput,
} from '../dist/index.js';
import { countsSettle, settledCounts, socketInodes, socketsClosed, socketsSince } from './metrics.mjs';
import { rejection, silentServer } from './probes.js';
import { realm, runCRemctl } from './realm-context.mjs';
import {
  childrenOf,
  freePort,
  onFreePort,
  pidDirectory,
  processIsAlive,
  readPid,
  remctldArgs,
  restartRemctld,
  startRemctld,
  stopRemctld,
  type RealmSettings,
} from './realm-control.mjs';
import { bigPattern } from './realm.mjs';

const DROP_CONNECTION = fileURLToPath(new URL('./fixtures/drop-connection.mjs', import.meta.url));

const settings = realm();
const { host } = settings;
const server = { port: settings.port, principal: settings.principal };

// Every connection a test makes is closed after it, whatever the test did, so that no
// connection or thread outlives the test that made it.
const connections = new Set<Remctl>();

function track(r: Remctl): Remctl {
  connections.add(r);
  return r;
}

async function connect(options: Parameters<typeof Remctl.connect>[1] = {}): Promise<Remctl> {
  return track(await Remctl.connect(host, { ...server, ...options }));
}

afterEach(async () => {
  await Promise.all([...connections].map((r) => r.close()));
  connections.clear();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Tokens with their data as text, for comparison. */
function readable(token: RemctlOutput) {
  return 'data' in token ? { ...token, data: token.data.toString() } : token;
}

describe('opening and closing', () => {
  test('Remctl.connect opens a connection on which several commands run in turn', async () => {
    const r = await connect();
    expect(r.opened).toBe(true);
    expect(await r.run(['test', 'test'], { encoding: 'utf8' })).toEqual({ stdout: 'hello world\n', stderr: '', status: 0 });
    expect((await r.run(['test', 'whoami'], { encoding: 'utf8' })).stdout).toBe(`${settings.clientPrincipal}\n`);
    expect((await r.run(['test', 'status', '3'])).status).toBe(3);
    expect(r.opened).toBe(true);
  });

  test('new Remctl() is not opened until open() succeeds, and close() leaves it closed', async () => {
    const r = track(new Remctl());
    expect(r.opened).toBe(false);
    await r.open(host, server);
    expect(r.opened).toBe(true);
    expect((await r.run(['test', 'test'])).stdout.toString()).toBe('hello world\n');
    await r.close();
    expect(r.opened).toBe(false);
    // Closing again, or closing what never opened, is harmless.
    await r.close();
    await track(new Remctl()).close();
  });

  test("open() without a principal authenticates to libremctl's default, host/<host>", async () => {
    const r = track(new Remctl());
    await r.open(host, { port: server.port });
    expect((await r.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
  });

  test("error() says 'no currently open connection' before open and after close, and 'no error' after a success", async () => {
    const r = track(new Remctl());
    expect(r.error()).toBe('no currently open connection');
    await r.open(host, server);
    expect(r.error()).toBe('no error');
    await r.run(['test', 'test']);
    expect(r.error()).toBe('no error');
    await r.close();
    expect(r.error()).toBe('no currently open connection');
  });

  test("a failed open rejects with libremctl's text, leaves the connection closed, and error() repeats the text", async () => {
    const closedPort = await freePort();
    const r = track(new Remctl());
    const { error } = await rejection(r.open(host, { port: closedPort }));
    const message = `cannot connect to localhost (port ${closedPort}): Connection refused`;
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).toMatchObject({ name: 'RemctlError', message });
    expect(r.opened).toBe(false);
    expect(r.error()).toBe(message);
    await expect(r.run(['test', 'test'])).rejects.toThrow(RemctlNotOpenedError);
    // The same object opens fine once there is a server to open to.
    await r.open(host, server);
    expect(r.opened).toBe(true);
  });

  test('Remctl.connect rejects with the RemctlError of the failed open', async () => {
    const closedPort = await freePort();
    await expect(Remctl.connect(host, { port: closedPort })).rejects.toThrow(
      new RemctlError(`cannot connect to localhost (port ${closedPort}): Connection refused`, 'ERR_REMCTL_CONNECT'),
    );
  });

  test('authenticating to a principal the server does not hold keys for fails with a GSS-API RemctlError', async () => {
    const { error } = await rejection(Remctl.connect(host, { ...server, principal: settings.otherServicePrincipal }));
    expect(error).toBeInstanceOf(RemctlError);
    expect((error as Error).message).toMatch(/^GSS-API error initializing context: .*The ticket isn't for us/);
  });

  test('await using closes the connection at the end of the block', async () => {
    let seen: Remctl | undefined;
    {
      await using r = await Remctl.connect(host, server);
      seen = r;
      expect((await r.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
      expect(r.opened).toBe(true);
    }
    expect(seen!.opened).toBe(false);
    expect(seen!.error()).toBe('no currently open connection');
    await expect(seen!.noop()).rejects.toThrow(RemctlNotOpenedError);
  });

  test('[Symbol.asyncDispose]() closes the connection, as close() does', async () => {
    const r = await connect();
    await r[Symbol.asyncDispose]();
    expect(r.opened).toBe(false);
    await expect(r.run(['test', 'test'])).rejects.toThrow(RemctlNotOpenedError);
  });

  test('close() lets the calls made before it finish first', async () => {
    const r = await connect();
    const running = r.run(['test', 'sleep', '1'], { encoding: 'utf8' });
    const closing = r.close();
    expect(r.opened).toBe(false);
    expect(await running).toEqual({ stdout: 'slept 1\n', stderr: '', status: 0 });
    await closing;
  });

  test('close() lets calls queued before it run, also those still waiting for their turn, and refuses the calls made after it', async () => {
    const r = await connect();
    const first = r.run(['test', 'sleep', '1'], { encoding: 'utf8' });
    const queued = r.run(['test', 'echo', 'queued'], { encoding: 'utf8' });
    const spawned = r.spawn(['test', 'echo', 'spawned']);
    spawned.stderr.resume();
    const chunks: Buffer[] = [];
    spawned.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    const closing = r.close();
    const after = r.run(['test', 'echo', 'after']);
    expect(await first).toEqual({ stdout: 'slept 1\n', stderr: '', status: 0 });
    expect((await queued).stdout).toBe('queued\n');
    expect(await spawned.status).toBe(0);
    expect(Buffer.concat(chunks).toString()).toBe('spawned\n');
    await closing;
    await expect(after).rejects.toThrow(RemctlNotOpenedError);
  });

  test('every call that needs a connection rejects with RemctlNotOpenedError before open and after close', async () => {
    const r = track(new Remctl());
    const calls = () => [r.command(['test', 'test']), r.output(), r.noop(), r.run(['test', 'test'])];
    for (const call of calls()) {
      const { error } = await rejection(call);
      expect(error).toBeInstanceOf(RemctlNotOpenedError);
      expect(error).toBeInstanceOf(RemctlError);
      expect(error).toMatchObject({ name: 'RemctlNotOpenedError', message: 'no currently open connection' });
    }
    await r.open(host, server);
    await r.close();
    for (const call of calls()) await expect(call).rejects.toThrow(new RemctlNotOpenedError());
    const outputs = r.outputs();
    await expect(outputs.next()).rejects.toThrow(RemctlNotOpenedError);
  });
});

describe('command, output and outputs', () => {
  test('command() then output() hand over the output on streams 1 and 2, then the status', async () => {
    const r = await connect();
    await r.command(['test', 'echo', 'one', 'two']);
    const tokens: RemctlOutput[] = [];
    for (;;) {
      const token = await r.output();
      tokens.push(token);
      if (token.type !== 'output') break;
    }
    const stdout = Buffer.concat(tokens.flatMap((t) => (t.type === 'output' && t.stream === 1 ? [t.data] : [])));
    const stderr = Buffer.concat(tokens.flatMap((t) => (t.type === 'output' && t.stream === 2 ? [t.data] : [])));
    expect(stdout.toString()).toBe('one\ntwo\n');
    expect(stderr.toString()).toBe('stderr line\n');
    expect(tokens.at(-1)).toEqual({ type: 'status', status: 0 });
    expect(tokens.every((t) => t.type !== 'output' || Buffer.isBuffer(t.data))).toBe(true);
  });

  test('after the status token output() keeps returning done, until the next command', async () => {
    const r = await connect();
    await r.command(['test', 'status', '4']);
    expect(await r.output()).toEqual({ type: 'status', status: 4 });
    for (let i = 0; i < 3; i++) expect(await r.output()).toEqual({ type: 'done' });
    await r.command(['test', 'test']);
    expect(readable(await r.output())).toEqual({ type: 'output', data: 'hello world\n', stream: 1 });
    expect(await r.output()).toEqual({ type: 'status', status: 0 });
    expect(await r.output()).toEqual({ type: 'done' });
  });

  test("output() returns the server's error token rather than rejecting, then done", async () => {
    const r = await connect();
    await r.command(['test', 'bogus']);
    expect(readable(await r.output())).toEqual({ type: 'error', data: 'Unknown command', error: ERROR_UNKNOWN_COMMAND });
    expect(await r.output()).toEqual({ type: 'done' });
    expect(await r.output()).toEqual({ type: 'done' });
    await r.command(['restricted', 'x']);
    expect(readable(await r.output())).toEqual({ type: 'error', data: 'Access denied', error: ERROR_ACCESS });
    // The connection carries on after an error token.
    expect((await r.run(['test', 'test'])).status).toBe(0);
  });

  test('output() hands over each token as it arrives, not when the command ends', async () => {
    const r = await connect();
    const started = Date.now();
    await r.command(['test', 'lines']);
    expect(readable(await r.output())).toEqual({ type: 'output', data: 'first\n', stream: 1 });
    const first = Date.now() - started;
    expect(readable(await r.output())).toEqual({ type: 'output', data: 'second\n', stream: 1 });
    const second = Date.now() - started;
    expect(first).toBeLessThan(1000);
    expect(second - first).toBeGreaterThanOrEqual(1500);
    expect(await r.output()).toEqual({ type: 'status', status: 0 });
  });

  test('outputs() iterates the tokens of the command and ends after its status token', async () => {
    const r = await connect();
    await r.command(['test', 'big', '300000']);
    const tokens: RemctlOutput[] = [];
    for await (const token of r.outputs()) tokens.push(token);
    expect(tokens.at(-1)).toEqual({ type: 'status', status: 0 });
    const data = Buffer.concat(tokens.flatMap((t) => (t.type === 'output' ? [t.data] : [])));
    expect(data.equals(bigPattern(300000))).toBe(true);
    expect(await r.output()).toEqual({ type: 'done' });
  });

  test('outputs() ends after an error token', async () => {
    const r = await connect();
    await r.command(['nonexistent']);
    const tokens: RemctlOutput[] = [];
    for await (const token of r.outputs()) tokens.push(token);
    expect(tokens.map(readable)).toEqual([{ type: 'error', data: 'Unknown command', error: ERROR_UNKNOWN_COMMAND }]);
  });

  test('the status token of a command killed by a signal is 255, the exit code the C client gives', async () => {
    const cClient = await runCRemctl(['test', 'killed']);
    expect(cClient.status).toBe(255);
    const r = await connect();
    await r.command(['test', 'killed']);
    const tokens: RemctlOutput[] = [];
    for await (const token of r.outputs()) tokens.push(token);
    expect(tokens).toEqual([{ type: 'status', status: 255 }]);
  });

  test('calls made without waiting run in the order they were made', async () => {
    const r = await connect();
    const results = await Promise.all([
      r.command(['test', 'test']),
      r.output(),
      r.output(),
      r.command(['test', 'status', '3']),
      r.output(),
      r.output(),
      r.noop(),
      r.run(['test', 'echo', 'last'], { encoding: 'utf8' }),
    ]);
    expect(results.map((value) => (value && typeof value === 'object' && 'type' in value ? readable(value) : value))).toEqual([
      undefined,
      { type: 'output', data: 'hello world\n', stream: 1 },
      { type: 'status', status: 0 },
      undefined,
      { type: 'status', status: 3 },
      { type: 'done' },
      undefined,
      { stdout: 'last\n', stderr: 'stderr line\n', status: 0 },
    ]);
  });

  test('noop() resolves on an open connection and the connection carries on', async () => {
    const r = await connect();
    await expect(r.noop()).resolves.toBeUndefined();
    await expect(r.noop()).resolves.toBeUndefined();
    expect((await r.run(['test', 'test'])).status).toBe(0);
  });

  test('command() sends Buffer arguments byte for byte', async () => {
    const r = await connect();
    const data = Buffer.from([0x00, 0xff, 0x80, 0x0a, 0x00]);
    await r.command(['test', 'stdin', data]);
    const token = await r.output();
    expect(token.type === 'output' && token.data.equals(data)).toBe(true);
    expect(await r.output()).toEqual({ type: 'status', status: 0 });
  });
});

describe('run()', () => {
  test('collects the output as remctl() does: Buffers by default, strings with an encoding', async () => {
    const r = await connect();
    expect(await r.run(['test', 'echo', 'naïve ☃'])).toEqual({
      stdout: Buffer.from('naïve ☃\n'),
      stderr: Buffer.from('stderr line\n'),
      status: 0,
    });
    expect(await r.run(['test', 'echo', 'naïve ☃'], { encoding: 'utf8' })).toEqual({
      stdout: 'naïve ☃\n',
      stderr: 'stderr line\n',
      status: 0,
    });
    expect((await r.run(['test', 'test'], { encoding: 'base64' })).stdout).toBe(Buffer.from('hello world\n').toString('base64'));
  });

  test('two run() calls at once on one connection both complete, in the order they were made', async () => {
    const r = await connect();
    const finished: string[] = [];
    const [slow, fast] = await Promise.all([
      r.run(['test', 'sleep', '1'], { encoding: 'utf8' }).then((result) => (finished.push('slow'), result)),
      r.run(['test', 'echo', 'fast'], { encoding: 'utf8' }).then((result) => (finished.push('fast'), result)),
    ]);
    expect(slow).toEqual({ stdout: 'slept 1\n', stderr: '', status: 0 });
    expect(fast).toEqual({ stdout: 'fast\n', stderr: 'stderr line\n', status: 0 });
    expect(finished).toEqual(['slow', 'fast']);
  });

  test('rejects with a RemctlProtocolError for an error token, and the connection stays usable', async () => {
    const r = await connect();
    const { error } = await rejection(r.run(['restricted', 'x']));
    expect(error).toBeInstanceOf(RemctlProtocolError);
    expect(error).toMatchObject({ name: 'RemctlProtocolError', message: 'Access denied', errorCode: 6, code: 'ERROR_ACCESS' });
    await expect(r.run(['nonexistent'])).rejects.toMatchObject({
      message: 'Unknown command',
      errorCode: 5,
      code: 'ERROR_UNKNOWN_COMMAND',
    });
    expect(r.opened).toBe(true);
    expect((await r.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
  });

  test("the server's other refusals arrive with their own codes: too many arguments (7) and no help (10)", async () => {
    const r = await connect();
    await expect(r.run(['test', 'echo', ...Array<string>(5000).fill('a')])).rejects.toMatchObject({
      name: 'RemctlProtocolError',
      message: 'Too many arguments',
      errorCode: ERROR_TOOMANY_ARGS,
      code: 'ERROR_TOOMANY_ARGS',
    });
    await expect(r.run(['help', 'test', 'test'])).rejects.toMatchObject({
      message: 'No help defined for command',
      errorCode: ERROR_NO_HELP,
      code: 'ERROR_NO_HELP',
    });
  });

  test('past maxBuffer rejects with a MaxBufferError and closes the connection: opened is false and the next call is refused as not opened', async () => {
    const r = await connect();
    const { error } = await rejection(r.run(['test', 'big', '100000'], { maxBuffer: 1000 }));
    expect(error).toBeInstanceOf(MaxBufferError);
    expect(error).toMatchObject({ code: 'ERR_REMCTL_MAXBUFFER' });
    expect((error as MaxBufferError).stdout.length).toBeLessThanOrEqual(1000);
    expect(r.opened).toBe(false);
    await expect(r.run(['test', 'test'])).rejects.toThrow(RemctlNotOpenedError);
    await r.open(host, server);
    expect((await r.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
  });

  test('output exactly at maxBuffer is accepted', async () => {
    const r = await connect();
    const { stdout } = await r.run(['test', 'big', '1000'], { maxBuffer: 1000 });
    expect(stdout.length).toBe(1000);
  });
});

describe('timeouts', () => {
  test('the setters take milliseconds and refuse a negative or fractional one with a RangeError naming it', () => {
    const r = track(new Remctl());
    expect(() => r.setIdleTimeout(-1)).toThrow(new RangeError('ms must be a whole number of milliseconds from 0 to 2147483647, got -1'));
    expect(() => r.setConnectTimeout(0.5)).toThrow(new RangeError('ms must be a whole number of milliseconds from 0 to 2147483647, got 0.5'));
    expect(() => r.setIdleTimeout('1' as never)).toThrow(new TypeError('ms must be a number of milliseconds, got the string "1"'));
  });

  test("with setIdleTimeout(1000), a command silent for 3 s rejects with 'error receiving token: timed out', and the next command works", async () => {
    const r = await connect();
    r.setIdleTimeout(1000);
    const started = Date.now();
    const { error, ms } = await rejection(r.run(['test', 'sleep', '3']), started);
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).not.toBeInstanceOf(RemctlProtocolError);
    expect((error as Error).message).toBe('error receiving token: timed out');
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(2500);
    expect(await r.run(['test', 'test'], { encoding: 'utf8' })).toEqual({ stdout: 'hello world\n', stderr: '', status: 0 });
  });

  test('the idleTimeout option of the constructor applies to output(), and after each timeout the next command reopens', async () => {
    const r = track(new Remctl({ idleTimeout: 1000 }));
    await r.open(host, server);
    for (let round = 1; round <= 3; round++) {
      await r.command(['test', 'sleep', '3']);
      await expect(r.output()).rejects.toThrow(new RemctlError('error receiving token: timed out', 'ERR_REMCTL_TIMEOUT'));
      const next = await r.run(['test', 'echo', `round ${round}`], { encoding: 'utf8' }).catch((error: Error) => error.message);
      expect(next).toEqual({ stdout: `round ${round}\n`, stderr: 'stderr line\n', status: 0 });
    }
  });

  test('setIdleTimeout(0) takes the idle timeout away again', async () => {
    const r = track(new Remctl({ idleTimeout: 1000 }));
    await r.open(host, server);
    r.setIdleTimeout(0);
    expect((await r.run(['test', 'sleep', '1.5'], { encoding: 'utf8' })).stdout).toBe('slept 1.5\n');
  });
});

describe('ccache and sourceIp', () => {
  test('two connections at once authenticate from their own ticket caches, and process.env.KRB5CCNAME does not change', async () => {
    const before = process.env.KRB5CCNAME;
    const [asClient, asOther] = await Promise.all([
      connect({ ccache: settings.ccache }),
      connect({ ccache: settings.otherCcache }),
    ]);
    expect(process.env.KRB5CCNAME).toBe(before);
    const [client, other] = await Promise.all([
      asClient.run(['test', 'whoami'], { encoding: 'utf8' }),
      asOther.run(['test', 'whoami'], { encoding: 'utf8' }),
    ]);
    expect(client.stdout).toBe(`${settings.clientPrincipal}\n`);
    expect(other.stdout).toBe(`${settings.otherPrincipal}\n`);
    // Each keeps its identity for later commands.
    expect((await asOther.run(['restricted', 'x'], { encoding: 'utf8' })).stdout).toBe('restricted ok\n');
    await expect(asClient.run(['restricted', 'x'])).rejects.toMatchObject({ code: 'ERROR_ACCESS' });
    expect(process.env.KRB5CCNAME).toBe(before);
    expect(process.env.KRB5CCNAME).toBe(settings.ccache);
  });

  test('setCcache applies from the next open: the open connection keeps its identity until then', async () => {
    const r = await connect();
    r.setCcache(settings.otherCcache);
    expect((await r.run(['test', 'whoami'], { encoding: 'utf8' })).stdout).toBe(`${settings.clientPrincipal}\n`);
    await r.open(host, server);
    expect((await r.run(['test', 'whoami'], { encoding: 'utf8' })).stdout).toBe(`${settings.otherPrincipal}\n`);
    expect(process.env.KRB5CCNAME).toBe(settings.ccache);
  });

  test("a ticket cache that does not exist makes open fail with libremctl's GSS-API message", async () => {
    const r = track(new Remctl({ ccache: `FILE:${settings.dir}/no-such.ccache` }));
    await expect(r.open(host, server)).rejects.toThrow(/^GSS-API error importing ticket cache: .*No credentials cache found/);
    expect(r.opened).toBe(false);
  });

  test("connects from sourceIp '127.0.0.1', given to the constructor or to setSourceIp", async () => {
    const fromConstructor = track(new Remctl({ sourceIp: '127.0.0.1' }));
    await fromConstructor.open(host, server);
    expect((await fromConstructor.run(['test', 'test'])).status).toBe(0);
    const fromSetter = track(new Remctl());
    fromSetter.setSourceIp('127.0.0.1');
    await fromSetter.open(host, server);
    expect((await fromSetter.run(['test', 'test'])).status).toBe(0);
  });

  test('a sourceIp this host does not have makes open fail in the words of the system', async () => {
    const r = track(new Remctl());
    r.setSourceIp('192.0.2.1');
    await expect(r.open(host, server)).rejects.toThrow(
      new RemctlError(`cannot connect to localhost (port ${server.port}): Cannot assign requested address`, 'ERR_REMCTL_CONNECT'),
    );
  });
});

describe('abort', () => {
  test('aborting open() towards a server that never answers rejects promptly with signal.reason and lets go of socket and thread', async () => {
    await (await connect()).close();
    const listener = await silentServer();
    // The listener's own descriptor is in the baseline.
    const before = await settledCounts();
    try {
      const r = track(new Remctl());
      const controller = new AbortController();
      const opening = r.open(host, { port: listener.port, signal: controller.signal });
      await vi.waitFor(() => expect(listener.accepted).toBe(1));
      await sleep(200);
      const abortedAt = Date.now();
      controller.abort();
      const { error, ms } = await rejection(opening, abortedAt);
      expect(error).toBe(controller.signal.reason);
      expect(error).toMatchObject({ name: 'AbortError' });
      expect(ms).toBeLessThan(500);
      expect(r.opened).toBe(false);
      expect(r.error()).toBe('no currently open connection');
      await vi.waitFor(() => expect(listener.open).toBe(0), { timeout: 3000 });
      expect(await countsSettle(before)).toStrictEqual(before);
    } finally {
      await listener.close();
    }
  });

  test('Remctl.connect takes a signal too, and rejects with its reason', async () => {
    const listener = await silentServer();
    try {
      const reason = new Error('gave up');
      const controller = new AbortController();
      const connecting = Remctl.connect(host, { port: listener.port, signal: controller.signal });
      await vi.waitFor(() => expect(listener.accepted).toBe(1));
      controller.abort(reason);
      await expect(connecting).rejects.toBe(reason);
      await vi.waitFor(() => expect(listener.open).toBe(0), { timeout: 3000 });
    } finally {
      await listener.close();
    }
  });

  test('aborting output() while test sleep 10 runs rejects promptly with signal.reason, its thread and socket are gone at once, and the next call reopens the connection', async () => {
    const before = await settledCounts();
    const sockets = socketInodes();
    const r = await connect();
    await r.command(['test', 'sleep', '10']);
    const mine = socketsSince(sockets);
    expect(mine).not.toHaveLength(0);
    const controller = new AbortController();
    const waiting = r.output({ signal: controller.signal });
    await sleep(200);
    const abortedAt = Date.now();
    controller.abort();
    const { error, ms } = await rejection(waiting, abortedAt);
    expect(error).toBe(controller.signal.reason);
    expect(ms).toBeLessThan(500);
    // Interrupted, not left to wait the command out: its socket closed and its thread gone within
    // 3 s of a 10 s sleep.
    expect(await socketsClosed(mine)).toStrictEqual([]);
    expect(await countsSettle(before)).toStrictEqual(before);
    // Only the aborted call was cancelled: the Remctl stays open, and its next call runs on a
    // connection opened anew, with nothing left of the aborted command's output.
    expect(r.opened).toBe(true);
    expect((await r.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
  });

  test('aborting run() while it waits rejects promptly with signal.reason and ends the connection: its thread and socket are gone at once, and the next call reopens it', async () => {
    const before = await settledCounts();
    const sockets = socketInodes();
    const r = await connect();
    const mine = socketsSince(sockets);
    expect(mine).not.toHaveLength(0);
    const controller = new AbortController();
    const reason = new Error('enough');
    const running = r.run(['test', 'sleep', '10'], { signal: controller.signal });
    await sleep(300);
    const abortedAt = Date.now();
    controller.abort(reason);
    const { error, ms } = await rejection(running, abortedAt);
    expect(error).toBe(reason);
    expect(ms).toBeLessThan(1000);
    // Interrupted, not left to wait the command out: its socket closed and its thread gone within
    // 3 s of a 10 s sleep.
    expect(await socketsClosed(mine)).toStrictEqual([]);
    expect(await countsSettle(before)).toStrictEqual(before);
    expect(r.opened).toBe(true);
    expect((await r.run(['test', 'echo', 'after'], { encoding: 'utf8' })).stdout).toBe('after\n');
  });

  test('aborting an outputs() iteration while it waits for the next token rejects it promptly with signal.reason, and the connection\'s thread and socket are gone at once', async () => {
    const before = await settledCounts();
    const sockets = socketInodes();
    const r = await connect();
    const mine = socketsSince(sockets);
    expect(mine).not.toHaveLength(0);
    // "first", then ten seconds of silence before "second".
    await r.command(['test', 'lines', '10']);
    const controller = new AbortController();
    const seen: RemctlOutput[] = [];
    let abortedAt = 0;
    const iterating = (async () => {
      for await (const token of r.outputs({ signal: controller.signal })) {
        seen.push(token);
        setTimeout(() => {
          abortedAt = Date.now();
          controller.abort();
        }, 300);
      }
    })();
    const { error } = await rejection(iterating);
    expect(error).toBe(controller.signal.reason);
    expect(Date.now() - abortedAt).toBeLessThan(1000);
    expect(seen.map(readable)).toEqual([{ type: 'output', data: 'first\n', stream: 1 }]);
    // Interrupted, not left to wait the command out: its socket closed and its thread gone within
    // 3 s of the 10 s pause.
    expect(await socketsClosed(mine)).toStrictEqual([]);
    expect(await countsSettle(before)).toStrictEqual(before);
    expect(r.opened).toBe(true);
    expect((await r.run(['test', 'echo', 'after'], { encoding: 'utf8' })).stdout).toBe('after\n');
  });

  test('a signal that aborts between two calls refuses the next call but leaves the connection open', async () => {
    const r = await connect();
    await r.command(['test', 'echo', 'a']);
    const controller = new AbortController();
    const first = await r.output({ signal: controller.signal });
    expect(first.type).toBe('output');
    controller.abort();
    await expect(r.output({ signal: controller.signal })).rejects.toBe(controller.signal.reason);
    expect(r.opened).toBe(true);
    // The rest of the command's output is still there for a call without that signal.
    const rest: RemctlOutput[] = [];
    for await (const token of r.outputs()) rest.push(token);
    expect(rest.at(-1)).toEqual({ type: 'status', status: 0 });
  });

  test('a signal aborted before the call rejects with its reason and touches neither the connection nor the network', async () => {
    const r = await connect();
    const reason = new Error('not now');
    const signal = AbortSignal.abort(reason);
    await expect(r.command(['test', 'test'], { signal })).rejects.toBe(reason);
    await expect(r.output({ signal })).rejects.toBe(reason);
    await expect(r.noop({ signal })).rejects.toBe(reason);
    await expect(r.run(['test', 'test'], { signal })).rejects.toBe(reason);
    expect(r.opened).toBe(true);
    expect((await r.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');

    const listener = await silentServer();
    try {
      const fresh = track(new Remctl());
      await expect(fresh.open(host, { port: listener.port, signal })).rejects.toBe(reason);
      await expect(Remctl.connect(host, { port: listener.port, signal: AbortSignal.abort() })).rejects.toMatchObject({
        name: 'AbortError',
      });
      await sleep(100);
      expect(listener.accepted).toBe(0);
      expect(fresh.opened).toBe(false);
    } finally {
      await listener.close();
    }
  });
});

describe('a remctld that goes away', () => {
  // A remctld of these tests' own, serving the shared realm on a port of its own.
  let own: RealmSettings;
  const ownServer = () => ({ port: own.port, principal: own.principal });

  beforeAll(async () => {
    await onFreePort(async (port) => {
      const pidFile = join(pidDirectory(settings.dir), `remctld-connection-test-${port}.pid`);
      own = {
        ...settings,
        port,
        remctldPidFile: pidFile,
        remctldLog: join(settings.dir, `remctld-connection-test-${port}.log`),
        remctldArgs: remctldArgs({
          port,
          principal: settings.principal,
          keytab: settings.serviceKeytab,
          confPath: settings.confPath,
          pidFile,
        }),
      };
      return startRemctld(own);
    });
  });

  afterAll(async () => {
    if (own) await stopRemctld(own);
  });

  /** The remctld processes serving connections: children of the listening daemon. */
  const connectionHandlers = () => childrenOf(readPid(own.remctldPidFile)!);

  test('a connection the server closed between commands is reopened by the next run()', async () => {
    const r = await connect(ownServer());
    expect((await r.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
    await restartRemctld(own);
    expect(await r.run(['test', 'test'], { encoding: 'utf8' })).toEqual({ stdout: 'hello world\n', stderr: '', status: 0 });
    expect(r.opened).toBe(true);
  });

  test('a connection the server closed between commands is reopened by the next command()', async () => {
    const r = await connect(ownServer());
    await r.noop();
    await restartRemctld(own);
    await r.command(['test', 'whoami']);
    expect(readable(await r.output())).toEqual({ type: 'output', data: `${settings.clientPrincipal}\n`, stream: 1 });
    expect(await r.output()).toEqual({ type: 'status', status: 0 });
  });

  test('a connection the server closed between commands is reopened by noop(), with the ticket cache it was opened with', async () => {
    const r = await connect({ ...ownServer(), ccache: settings.otherCcache });
    await r.noop();
    await restartRemctld(own);
    await r.noop();
    expect((await r.run(['test', 'whoami'], { encoding: 'utf8' })).stdout).toBe(`${settings.otherPrincipal}\n`);
  });

  test('a connection lost during a command fails that command with a RemctlError, and the next run() reopens', async () => {
    // Handlers of earlier tests' connections may still be winding down: this one's is new.
    const earlier = new Set(connectionHandlers());
    const r = await connect(ownServer());
    await r.noop();
    const handlers = connectionHandlers().filter((pid) => !earlier.has(pid));
    expect(handlers).toHaveLength(1);
    const [handler] = handlers;
    const running = r.run(['test', 'sleep', '3']);
    // Once the handler has started the command, kill it: the connection ends with no status.
    await vi.waitFor(() => expect(childrenOf(handler!)).not.toHaveLength(0), { timeout: 5000 });
    process.kill(handler!, 'SIGKILL');
    const { error, ms } = await rejection(running);
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).not.toBeInstanceOf(RemctlProtocolError);
    expect((error as Error).message).toMatch(/^error receiving token: /);
    expect(ms).toBeLessThan(2000);
    expect(await r.run(['test', 'test'], { encoding: 'utf8' })).toEqual({ stdout: 'hello world\n', stderr: '', status: 0 });
  });

  test('a remctld restarted while a command runs reports its death as status 255, as the C client does, and the next run() reopens', async () => {
    const r = await connect(ownServer());
    const running = r.run(['test', 'sleep', '3']);
    const cClient = runCRemctl(['test', 'sleep', '3'], { port: own.port });
    await sleep(500);
    await restartRemctld(own);
    const [result, c] = await Promise.all([running, cClient]);
    expect(c.status).toBe(255);
    expect(result).toEqual({ stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), status: 255 });
    expect((await r.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
  });

  test('a stopped remctld makes the next command fail with a RemctlError saying it cannot connect', async () => {
    const r = await connect(ownServer());
    await r.noop();
    const handlers = connectionHandlers();
    await stopRemctld(own);
    try {
      // Once the process that served the connection is gone, the connection is seen closed.
      await vi.waitFor(() => expect(handlers.filter(processIsAlive)).toEqual([]));
      await sleep(100);
      await expect(r.run(['test', 'test'])).rejects.toThrow(
        new RemctlError(`cannot connect to localhost (port ${own.port}): Connection refused`, 'ERR_REMCTL_CONNECT'),
      );
    } finally {
      await startRemctld(own);
    }
  });
});

describe('garbage collection', () => {
  function runFixture(mode: string): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string; ms: number }> {
    const started = Date.now();
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        ['--expose-gc', DROP_CONNECTION, mode],
        { env: process.env, timeout: 20_000 },
        (error, stdout, stderr) => {
          const failure = error as (Error & { code?: number; signal?: string }) | null;
          resolve({
            code: failure ? (typeof failure.code === 'number' ? failure.code : null) : 0,
            signal: failure?.signal ?? null,
            stdout,
            stderr,
            ms: Date.now() - started,
          });
        },
      );
    });
  }

  test('a Remctl dropped without close while its command runs is collected, leaves no thread or descriptor, and the process exits on its own', async () => {
    const child = await runFixture('idle');
    expect(child.stderr).toBe('');
    expect({ code: child.code, signal: child.signal }).toEqual({ code: 0, signal: null });
    const report = JSON.parse(child.stdout);
    expect(report.collected).toBe(true);
    // While its command runs, the connection holds a socket but no thread.
    expect(report.during.threads).toBe(report.before.threads);
    expect(report.during.fds).toBeGreaterThan(report.before.fds);
    expect(report.after).toEqual(report.before);
    expect(report.left).toEqual([]);
    // The command on the server takes 10 s; the dropped connection does not wait for it.
    expect(report.elapsedMs).toBeLessThan(6000);
    expect(child.ms).toBeLessThan(9000);
  });

  test('a Remctl dropped with a run() pending finishes that run, is then collected, and the process exits on its own', async () => {
    const child = await runFixture('run');
    expect(child.stderr).toBe('');
    expect({ code: child.code, signal: child.signal }).toEqual({ code: 0, signal: null });
    const report = JSON.parse(child.stdout);
    expect(report.run).toBe('resolved: {"stdout":"slept 3\\n","stderr":"","status":0}');
    expect(report.collected).toBe(true);
    // While its command runs, the connection holds a socket but no thread.
    expect(report.during.threads).toBe(report.before.threads);
    expect(report.during.fds).toBeGreaterThan(report.before.fds);
    expect(report.after).toEqual(report.before);
    expect(report.left).toEqual([]);
    expect(child.ms).toBeLessThan(8000);
  });
});

describe('errors', () => {
  test('the protocol error codes are exported under their names, 1 to 10', () => {
    expect([
      ERROR_INTERNAL,
      ERROR_BAD_TOKEN,
      ERROR_UNKNOWN_MESSAGE,
      ERROR_BAD_COMMAND,
      ERROR_UNKNOWN_COMMAND,
      ERROR_ACCESS,
      ERROR_TOOMANY_ARGS,
      ERROR_TOOMUCH_DATA,
      ERROR_UNEXPECTED_MESSAGE,
      ERROR_NO_HELP,
    ]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  test("a RemctlProtocolError with a code the protocol does not name has code 'ERROR_n'", () => {
    // Stock remctld sends only codes it knows, so this one is made by hand.
    const error = new RemctlProtocolError('Something new', 42);
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).toMatchObject({ name: 'RemctlProtocolError', message: 'Something new', errorCode: 42, code: 'ERROR_42' });
    expect(new RemctlProtocolError('x', ERROR_BAD_COMMAND).code).toBe('ERROR_BAD_COMMAND');
  });
});

describe('bad input', () => {
  test('the constructor refuses unknown and invalid settings, with a suggestion for a misspelling', () => {
    expect(() => new Remctl({ idleTimout: 1 } as never)).toThrow(new TypeError('unknown option "idleTimout" in options; did you mean "idleTimeout"?'));
    // port belongs to open(), and a call's timeout to the call, not to the connection's settings.
    expect(() => new Remctl({ port: 1 } as never)).toThrow(
      /^unknown option "port" in options; known options: idleTimeout, connectTimeout, ccache, sourceIp\b/,
    );
    expect(() => new Remctl({ timeout: 1000 } as never)).toThrow(/^unknown option "timeout" in options; known options: idleTimeout, connectTimeout,/);
    expect(() => new Remctl({ idleTimeout: -1 })).toThrow(
      new RangeError('idleTimeout must be a whole number of milliseconds from 0 to 2147483647, got -1'),
    );
    expect(() => new Remctl({ ccache: 5 } as never)).toThrow(new TypeError('ccache must be a string, got number 5'));
    expect(() => new Remctl({ sourceIp: '127.0.0.300' })).toThrow(
      new TypeError('sourceIp must be an IPv4 or IPv6 address, got the string "127.0.0.300"'),
    );
    expect(() => new Remctl('fast' as never)).toThrow(new TypeError('options must be an object, got the string "fast"'));
  });

  test('the setters refuse what libremctl could not take, naming the argument', () => {
    const r = track(new Remctl());
    expect(() => r.setIdleTimeout('1' as never)).toThrow(new TypeError('ms must be a number of milliseconds, got the string "1"'));
    expect(() => r.setConnectTimeout(1.5)).toThrow(new RangeError('ms must be a whole number of milliseconds from 0 to 2147483647, got 1.5'));
    expect(() => r.setCcache('')).toThrow(new TypeError('path must not be empty'));
    expect(() => r.setCcache('FILE:/tmp/a\0b')).toThrow(new TypeError('path must not contain a NUL byte'));
    expect(() => r.setSourceIp('nowhere')).toThrow(new TypeError('ip must be an IPv4 or IPv6 address, got the string "nowhere"'));
  });

  test('open() and Remctl.connect refuse bad targets before connecting', async () => {
    const listener = await silentServer();
    try {
      const r = track(new Remctl());
      await expect(r.open(host, { port: -1 })).rejects.toThrow(new RangeError('invalid port number: -1'));
      await expect(r.open(host, { port: 2.5 })).rejects.toThrow(new TypeError('port must be an integer, got number 2.5'));
      await expect(r.open(host, { port: listener.port, principal: 'host/localhost\0' })).rejects.toThrow(
        new TypeError('principal must not contain a NUL byte'),
      );
      await expect(r.open('', { port: listener.port })).rejects.toThrow(new TypeError('host must not be empty'));
      await expect(r.open(host, { port: listener.port, prinicpal: 'x' } as never)).rejects.toThrow(
        new TypeError('unknown option "prinicpal" in options; did you mean "principal"?'),
      );
      await expect(r.open(host, { port: listener.port, idleTimeout: 1000 } as never)).rejects.toThrow(
        new TypeError('unknown option "idleTimeout" in options; known options: port, principal, signal'),
      );
      await expect(Remctl.connect(host, { port: listener.port, sourceIP: '127.0.0.1' } as never)).rejects.toThrow(
        new TypeError('unknown option "sourceIP" in options; did you mean "sourceIp"?'),
      );
      await expect(Remctl.connect(host, { port: listener.port, connectTimeout: -1 })).rejects.toThrow(RangeError);
      await sleep(50);
      expect(listener.accepted).toBe(0);
      expect(r.opened).toBe(false);
    } finally {
      await listener.close();
    }
  });

  test('calls on an open connection refuse bad commands and options, and the connection carries on', async () => {
    const r = await connect();
    await expect(r.run('test test' as never)).rejects.toThrow(
      new TypeError('command must be an iterable of arguments, not a single string: pass ["test", "test"], not "test test"'),
    );
    await expect(r.command(Buffer.from('test') as never)).rejects.toThrow(
      /^command must be an iterable of arguments, not a single Buffer/,
    );
    await expect(r.command([])).rejects.toThrow(new TypeError('command must not be empty'));
    await expect(r.run(['test', null] as never)).rejects.toThrow(
      new TypeError('command arguments must be strings or Buffers (command[1] is null)'),
    );
    await expect(r.run(['test', 'test'], { encodng: 'utf8' } as never)).rejects.toThrow(
      new TypeError('unknown option "encodng" in options; did you mean "encoding"?'),
    );
    await expect(r.run(['test', 'test'], { maxBuffer: -5 })).rejects.toThrow(
      new RangeError('maxBuffer must be a positive whole number of bytes or Infinity, got -5'),
    );
    await expect(r.output({ signal: 'stop' } as never)).rejects.toThrow(
      new TypeError('signal must be an AbortSignal, got the string "stop"'),
    );
    await expect(r.noop({ encoding: 'utf8' } as never)).rejects.toThrow(
      new TypeError('unknown option "encoding" in options; known options: signal'),
    );
    expect(r.opened).toBe(true);
    expect((await r.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
    // Nothing was sent: the first output is done, not the output of some command.
    expect(await r.output()).toEqual({ type: 'done' });
  });
});
