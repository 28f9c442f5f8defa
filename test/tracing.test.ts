// Tracing: the diagnostics_channel tracing channels remctl:open and remctl:command, subscribed
// to as an APM would, around real calls to the realm's stock remctld.

import { channel, tracingChannel } from 'node:diagnostics_channel';
import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { ERROR_UNKNOWN_COMMAND, Remctl, RemctlError, RemctlPool, RemctlProtocolError, remctl, remctlSync, spawn } from '../dist/index.js';
import { rejection } from './probes.js';
import { realm } from './realm-context.mjs';
import { dropConnections, freePort, startExtraRemctld, type ExtraRemctld } from './realm-control.mjs';

const settings = realm();
const { host } = settings;
const server = { port: settings.port, principal: settings.principal };

const EVENTS = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const;
type Name = 'open' | 'command';

interface Published {
  /** "command:start", "open:error"... */
  name: string;
  /** The object published: the same one for every event of a span. */
  context: Record<string, unknown>;
  /** Its own fields as they were when this event was published. */
  fields: Record<string, unknown>;
}

let stop: (() => void) | undefined;

afterEach(() => {
  stop?.();
  stop = undefined;
});

/** Everything published on remctl:open and remctl:command from now until the test ends. */
function record(): Published[] {
  const published: Published[] = [];
  const subscribers = (name: Name) => {
    const on = (event: string) => (context: Record<string, unknown>) => {
      published.push({ name: `${name}:${event}`, context, fields: { ...context } });
    };
    return { start: on('start'), end: on('end'), asyncStart: on('asyncStart'), asyncEnd: on('asyncEnd'), error: on('error') };
  };
  const open = subscribers('open');
  const command = subscribers('command');
  tracingChannel('remctl:open').subscribe(open);
  tracingChannel('remctl:command').subscribe(command);
  const earlier = stop;
  stop = () => {
    earlier?.();
    tracingChannel('remctl:open').unsubscribe(open);
    tracingChannel('remctl:command').unsubscribe(command);
  };
  return published;
}

const names = (published: Published[]) => published.map((event) => event.name);

/** The events of one span, by the object they published. */
const spanOf = (published: Published[], context: unknown) => published.filter((event) => event.context === context);

/**
 * A few turns of the event loop: a spawned command's span ends in a reaction to its status,
 * which may come after the test's own.
 */
async function turns(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

const SUCCESS = ['start', 'end', 'asyncStart', 'asyncEnd'];
const FAILURE = ['start', 'end', 'error', 'asyncStart', 'asyncEnd'];
const prefixed = (name: Name, events: string[]) => events.map((event) => `${name}:${event}`);

describe('remctl:command', () => {
  test('remctl() publishes one span, start, end, asyncStart and asyncEnd, with the target, the command, a new connection and the exit status', async () => {
    const published = record();
    const result = await remctl(host, ['test', 'status', '3'], server);
    expect(result.status).toBe(3);
    expect(names(published)).toEqual(prefixed('command', SUCCESS));
    const [start, , asyncStart, asyncEnd] = published;
    expect(spanOf(published, start!.context)).toHaveLength(4);
    expect(start!.fields).toStrictEqual({
      host,
      port: settings.port,
      principal: settings.principal,
      command: ['test', 'status'],
      connectionId: expect.any(Number),
      reused: false,
    });
    // result is the output's place in tracePromise's contexts: it stays empty, the output is never published.
    expect(asyncStart!.fields).toStrictEqual({ ...start!.fields, status: 3, result: undefined });
    expect(asyncEnd!.fields).toStrictEqual(asyncStart!.fields);
  });

  test('each remctl() is a connection of its own, with an id of its own', async () => {
    const published = record();
    await remctl(host, ['test', 'test'], server);
    await remctl(host, ['test', 'test'], server);
    const starts = published.filter((event) => event.name === 'command:start');
    expect(starts).toHaveLength(2);
    expect(starts[0]!.fields.connectionId).not.toBe(starts[1]!.fields.connectionId);
    expect(starts.map((event) => event.fields.reused)).toEqual([false, false]);
  });

  test('publishes port 0 and principal undefined when the call asked for the defaults', async () => {
    const published = record();
    await remctl(host, ['test', 'test']).catch(() => {});
    expect(published[0]!.fields).toMatchObject({ host, port: 0, principal: undefined, command: ['test', 'test'] });
    expect('principal' in published[0]!.fields).toBe(true);
  });

  test('an unknown command ends its span on the error channel with the RemctlProtocolError and its code', async () => {
    const published = record();
    const { error } = await rejection(remctl(host, ['test', 'bogus'], server));
    expect(error).toBeInstanceOf(RemctlProtocolError);
    expect(names(published)).toEqual(prefixed('command', FAILURE));
    const failed = published.find((event) => event.name === 'command:error')!;
    expect(failed.context.error).toBe(error);
    expect(failed.fields).toMatchObject({ code: 'ERROR_UNKNOWN_COMMAND', command: ['test', 'bogus'] });
    expect((error as RemctlProtocolError).errorCode).toBe(ERROR_UNKNOWN_COMMAND);
    expect('status' in failed.fields).toBe(false);
  });

  test('a refused connection in remctl() ends its span on the error channel with the RemctlError and its code, ERR_REMCTL_CONNECT', async () => {
    const closedPort = await freePort();
    const published = record();
    const { error } = await rejection(remctl(host, ['test', 'test'], { ...server, port: closedPort }));
    expect(error).toBeInstanceOf(RemctlError);
    expect(names(published)).toEqual(prefixed('command', FAILURE));
    const failed = published.find((event) => event.name === 'command:error')!;
    expect(failed.context.error).toBe(error);
    expect(failed.fields.port).toBe(closedPort);
    expect(failed.fields.code).toBe('ERR_REMCTL_CONNECT');
  });

  test('Buffer arguments among the first two are published decoded as UTF-8, and a one-word command as one word', async () => {
    const published = record();
    await remctl(host, [Buffer.from('test'), new Uint8Array(Buffer.from('échø')), 'more'], server).catch(() => {});
    await remctl(host, ['test'], server).catch(() => {});
    const starts = published.filter((event) => event.name === 'command:start');
    expect(starts.map((event) => event.fields.command)).toEqual([['test', 'échø'], ['test']]);
  });

  test('remctlSync() publishes start and end around the call, with the exit status, and error between them when it throws', async () => {
    const published = record();
    expect(remctlSync(host, ['test', 'status', '4'], server).status).toBe(4);
    expect(names(published)).toEqual(['command:start', 'command:end']);
    expect(published[0]!.fields).toStrictEqual({
      host,
      port: settings.port,
      principal: settings.principal,
      command: ['test', 'status'],
      connectionId: expect.any(Number),
      reused: false,
    });
    expect(published[1]!.fields).toStrictEqual({ ...published[0]!.fields, status: 4, result: undefined });

    published.length = 0;
    let thrown: unknown;
    try {
      remctlSync(host, ['test', 'bogus'], server);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(RemctlProtocolError);
    expect(names(published)).toEqual(['command:start', 'command:error', 'command:end']);
    expect(published[1]!.context.error).toBe(thrown);
    expect(published[1]!.fields.code).toBe('ERROR_UNKNOWN_COMMAND');
  });

  test('spawn() publishes a remctl:open, then a remctl:command on that connection that ends with the status once the output has ended', async () => {
    const published = record();
    const child = spawn(host, ['test', 'stderr'], server);
    child.stdout.resume();
    child.stderr.on('data', (data: Buffer) => published.push({ name: `stderr: ${data}`, context: {}, fields: {} }));
    expect(await child.status).toBe(2);
    await turns();
    expect(names(published)).toEqual([
      ...prefixed('open', SUCCESS),
      'command:start',
      'command:end',
      'stderr: this is stderr\n',
      'command:asyncStart',
      'command:asyncEnd',
    ]);
    const opened = published[0]!;
    expect(opened.fields).toStrictEqual({ host, port: settings.port, principal: settings.principal, connectionId: expect.any(Number) });
    expect(published[3]!.fields).toStrictEqual({ ...opened.fields, result: undefined });
    expect(published[4]!.fields).toStrictEqual({ ...opened.fields, command: ['test', 'stderr'], reused: false });
    expect(published[8]!.fields).toStrictEqual({ ...published[4]!.fields, status: 2, result: undefined });
  });

  test('a spawn() whose open is refused publishes only remctl:open, ending on the error channel with the error its status rejects with', async () => {
    const closedPort = await freePort();
    const published = record();
    const child = spawn(host, ['test', 'test'], { ...server, port: closedPort });
    const { error } = await rejection(child.status);
    expect(error).toBeInstanceOf(RemctlError);
    expect(names(published)).toEqual(prefixed('open', FAILURE));
    expect(published[2]!.context.error).toBe(error);
  });
});

describe('remctl:open and remctl:command on a Remctl', () => {
  test('Remctl.connect() publishes a remctl:open span with the target and a connection id, and not the connection itself', async () => {
    const published = record();
    await using r = await Remctl.connect(host, server);
    expect(r.opened).toBe(true);
    expect(names(published)).toEqual(prefixed('open', SUCCESS));
    expect(published[0]!.fields).toStrictEqual({ host, port: settings.port, principal: settings.principal, connectionId: expect.any(Number) });
    expect(published[3]!.fields).toStrictEqual({ ...published[0]!.fields, result: undefined });
  });

  test('run() publishes its commands with the connection id of the open, reused false on its first command and true after', async () => {
    const published = record();
    await using r = await Remctl.connect(host, server);
    await r.run(['test', 'test']);
    expect((await r.run(['test', 'status', '1'])).status).toBe(1);
    const { connectionId } = published[0]!.fields;
    expect(names(published)).toEqual([...prefixed('open', SUCCESS), ...prefixed('command', SUCCESS), ...prefixed('command', SUCCESS)]);
    const ends = published.filter((event) => event.name === 'command:asyncEnd');
    expect(ends.map((event) => event.fields)).toStrictEqual([
      { host, port: settings.port, principal: settings.principal, command: ['test', 'test'], connectionId, reused: false, status: 0, result: undefined },
      { host, port: settings.port, principal: settings.principal, command: ['test', 'status'], connectionId, reused: true, status: 1, result: undefined },
    ]);
  });

  test('a protocol error from run() ends its span on the error channel with its code, and the connection is reused by the next command', async () => {
    await using r = await Remctl.connect(host, server);
    const published = record();
    const { error } = await rejection(r.run(['test', 'bogus']));
    await r.run(['test', 'test']);
    expect(names(published)).toEqual([...prefixed('command', FAILURE), ...prefixed('command', SUCCESS)]);
    expect(published[2]!.context.error).toBe(error);
    expect(published[2]!.fields).toMatchObject({ code: 'ERROR_UNKNOWN_COMMAND', reused: false });
    expect(published[8]!.fields).toMatchObject({ reused: true, status: 0 });
  });

  test('command() publishes a span that ends once the command is sent, without a status; noop() publishes nothing', async () => {
    await using r = await Remctl.connect(host, server);
    const published = record();
    await r.noop();
    await r.command(['test', 'status', '2']);
    const tokens = [];
    for await (const token of r.outputs()) tokens.push(token);
    expect(tokens).toEqual([{ type: 'status', status: 2 }]);
    await r.noop();
    expect(names(published)).toEqual(prefixed('command', SUCCESS));
    expect(published[3]!.fields).toStrictEqual({
      host,
      port: settings.port,
      principal: settings.principal,
      command: ['test', 'status'],
      connectionId: expect.any(Number),
      reused: false,
      result: undefined,
    });
  });

  test('Remctl#spawn() publishes a command on its connection that ends with the status once the output has ended', async () => {
    await using r = await Remctl.connect(host, server);
    await r.run(['test', 'test']);
    const published = record();
    const child = r.spawn(['test', 'status', '5']);
    expect(await child.status).toBe(5);
    await turns();
    expect(names(published)).toEqual(prefixed('command', SUCCESS));
    expect(published[3]!.fields).toMatchObject({ command: ['test', 'status'], reused: true, status: 5 });
  });

  test('an open() of another connection has a new id, and its first command is not reused', async () => {
    const published = record();
    await using r = await Remctl.connect(host, server);
    await r.run(['test', 'test']);
    await r.open(host, server);
    await r.run(['test', 'test']);
    const opens = published.filter((event) => event.name === 'open:start');
    const commands = published.filter((event) => event.name === 'command:start');
    expect(opens).toHaveLength(2);
    expect(opens[0]!.fields.connectionId).not.toBe(opens[1]!.fields.connectionId);
    expect(commands.map((event) => [event.fields.connectionId, event.fields.reused])).toEqual([
      [opens[0]!.fields.connectionId, false],
      [opens[1]!.fields.connectionId, false],
    ]);
  });

  test('an aborted run() ends its span on the error channel with the reason; the next run() reopens, a new remctl:open, and is not reused', async () => {
    await using r = await Remctl.connect(host, server);
    await r.run(['test', 'test']);
    const published = record();
    const controller = new AbortController();
    const running = r.run(['test', 'sleep', '2'], { signal: controller.signal });
    setTimeout(() => controller.abort(), 300);
    const { error } = await rejection(running);
    expect((error as Error).name).toBe('AbortError');
    await r.run(['test', 'test']);
    expect(names(published)).toEqual([...prefixed('command', FAILURE), ...prefixed('open', SUCCESS), ...prefixed('command', SUCCESS)]);
    expect(published[2]!.context.error).toBe(error);
    // An AbortError's code is DOMException's number 20, not a string: no code.
    expect('code' in published[2]!.fields).toBe(false);
    expect(published[0]!.fields.reused).toBe(true);
    const reopened = published[5]!.fields.connectionId;
    expect(reopened).not.toBe(published[0]!.fields.connectionId);
    expect(published[12]!.fields).toMatchObject({ connectionId: reopened, reused: false, status: 0 });
  });

  test('a refused open ends remctl:open on the error channel with the error connect() rejects with, and its code', async () => {
    const closedPort = await freePort();
    const published = record();
    const { error } = await rejection(Remctl.connect(host, { ...server, port: closedPort }));
    expect(error).toBeInstanceOf(RemctlError);
    expect((error as Error).message).toBe(`cannot connect to ${host} (port ${closedPort}): Connection refused`);
    expect(names(published)).toEqual(prefixed('open', FAILURE));
    const failed = published[2]!;
    expect(failed.context.error).toBe(error);
    expect(failed.fields).toMatchObject({ host, port: closedPort, principal: settings.principal, code: 'ERR_REMCTL_CONNECT' });
  });
});

describe('remctl:open and remctl:command on a pool', () => {
  test('pooled calls publish one remctl:open, then their commands on its connection, reused false on the first and true after', async () => {
    const pool = new RemctlPool();
    try {
      const published = record();
      await pool.run(host, ['test', 'test'], server);
      await remctl(host, ['test', 'status', '2'], { ...server, pool });
      expect(names(published)).toEqual([...prefixed('open', SUCCESS), ...prefixed('command', SUCCESS), ...prefixed('command', SUCCESS)]);
      const { connectionId } = published[0]!.fields;
      expect(published[4]!.fields).toMatchObject({ command: ['test', 'test'], connectionId, reused: false });
      expect(published[8]!.fields).toMatchObject({ command: ['test', 'status'], connectionId, reused: true });
      expect(published[11]!.fields).toMatchObject({ connectionId, status: 2 });
    } finally {
      await pool.close();
    }
  });
});

describe('a connection the server closed between calls', () => {
  // A remctld of these tests' own, whose every connection can be dropped.
  let daemon: ExtraRemctld;
  const where = () => ({ port: daemon.port, principal: settings.principal });

  beforeAll(async () => {
    daemon = await startExtraRemctld(settings, { principal: settings.principal, keytab: settings.serviceKeytab });
  });

  afterAll(async () => {
    await daemon?.stop();
  });

  /** The id of the open that replaced the dropped connection, checked: its fields, and an id that is not the dropped one's. */
  function reopened(published: Published[], before: unknown): number {
    const open = published.find((event) => event.name === 'open:start')!;
    expect(open.fields).toStrictEqual({ host, port: daemon.port, principal: settings.principal, connectionId: expect.any(Number) });
    expect(open.fields.connectionId).not.toBe(before);
    return open.fields.connectionId as number;
  }

  test('Remctl#run() publishes the reopen as a remctl:open before its command, which is on the new connection and not reused', async () => {
    await using r = await Remctl.connect(host, where());
    const first = record();
    await r.run(['test', 'test']);
    const before = first[0]!.fields.connectionId;
    await dropConnections(daemon);
    const published = record();
    expect((await r.run(['test', 'test'], { encoding: 'utf8' })).stdout).toBe('hello world\n');
    expect(names(published)).toEqual([...prefixed('open', SUCCESS), ...prefixed('command', SUCCESS)]);
    const connectionId = reopened(published, before);
    expect(published[7]!.fields).toMatchObject({ command: ['test', 'test'], connectionId, reused: false, status: 0 });
  });

  test('Remctl#noop() and Remctl#command() publish their reopens as remctl:open too', async () => {
    await using r = await Remctl.connect(host, where());
    await r.noop();
    await dropConnections(daemon);
    let published = record();
    await r.noop();
    expect(names(published)).toEqual(prefixed('open', SUCCESS));
    await r.run(['test', 'test']);
    await dropConnections(daemon);
    published = record();
    await r.command(['test', 'test']);
    for await (const token of r.outputs()) void token;
    expect(names(published)).toEqual([...prefixed('open', SUCCESS), ...prefixed('command', SUCCESS)]);
    expect(published[4]!.fields).toMatchObject({ connectionId: published[0]!.fields.connectionId, reused: false });
  });

  test('Remctl#spawn() publishes its reopen as a remctl:open before its command', async () => {
    await using r = await Remctl.connect(host, where());
    await r.run(['test', 'test']);
    await dropConnections(daemon);
    const published = record();
    const child = r.spawn(['test', 'test']);
    child.stdout.resume();
    expect(await child.status).toBe(0);
    await turns();
    expect(names(published)).toEqual([...prefixed('open', SUCCESS), ...prefixed('command', SUCCESS)]);
    expect(published[4]!.fields).toMatchObject({ connectionId: published[0]!.fields.connectionId, reused: false });
    expect(published[7]!.fields).toMatchObject({ connectionId: published[0]!.fields.connectionId, status: 0 });
  });

  test('a pooled call publishes its reopen as a remctl:open, and the pool counts it as opened', async () => {
    const pool = new RemctlPool();
    try {
      await pool.run(host, ['test', 'test'], where());
      await dropConnections(daemon);
      const published = record();
      await pool.run(host, ['test', 'test'], where());
      expect(names(published)).toEqual([...prefixed('open', SUCCESS), ...prefixed('command', SUCCESS)]);
      expect(published[4]!.fields).toMatchObject({ connectionId: published[0]!.fields.connectionId, reused: false });
      expect(pool.stats).toMatchObject({ connections: 1, opened: 2 });
    } finally {
      await pool.close();
    }
  });
});

describe('what is never published', () => {
  const SECRET = 'secret-value-7f3a';
  // How util.inspect shows the secret's bytes inside a Buffer or an ArrayBuffer.
  const SECRET_BYTES = Buffer.from(SECRET).toString('hex').replace(/(..)(?!$)/g, '$1 ');

  test('no argument after the first two, in any published object, on success or failure, as a string or a Buffer', async () => {
    const published = record();
    await remctl(host, ['test', 'echo', SECRET], server);
    await remctl(host, ['test', 'echo', Buffer.from(SECRET)], { ...server, encoding: 'utf8' });
    await rejection(remctl(host, ['test', 'bogus', SECRET], server));
    remctlSync(host, ['test', 'echo', SECRET], server);
    const child = spawn(host, ['test', 'echo', SECRET], server);
    child.stdout.resume();
    child.stderr.resume();
    await child.status;
    {
      await using r = await Remctl.connect(host, server);
      await r.run(['test', 'echo', SECRET]);
      await rejection(r.run(['test', 'bogus', SECRET]));
      await r.command(['test', 'echo', SECRET]);
      for await (const token of r.outputs()) void token;
      const streamed = r.spawn(['test', 'echo', SECRET]);
      streamed.stdout.resume();
      streamed.stderr.resume();
      await streamed.status;
    }
    await turns();
    expect(published.filter((event) => event.name === 'command:start')).toHaveLength(9);
    const options = { depth: Infinity, showHidden: true, maxArrayLength: Infinity, maxStringLength: Infinity, breakLength: Infinity };
    for (const { name, context, fields } of published) {
      for (const shown of [inspect(context, options), inspect(fields, options)]) {
        expect(shown, `${name} published the secret`).not.toContain(SECRET);
        expect(shown, `${name} published the secret's bytes`).not.toContain(SECRET_BYTES);
      }
    }
    // The command's words are there, so the search above looked in the right place.
    expect(inspect(published[0]!.context, options)).toContain("'echo'");
  });

  test('a call made while nobody subscribes builds no context and publishes nothing, even to a subscriber that comes before it ends', async () => {
    const command = tracingChannel('remctl:command');
    expect(command.hasSubscribers).toBe(false);
    await using r = await Remctl.connect(host, server);
    // Traced calls of remctl() take connection ids, one each, and untraced ones take none.
    const published = record();
    await remctl(host, ['test', 'test'], server);
    stop!();
    expect(command.hasSubscribers).toBe(false);

    const late: unknown[] = [];
    const listeners = EVENTS.map((event) => [channel(`tracing:remctl:command:${event}`), (message: unknown) => late.push(message)] as const);
    const once = remctl(host, ['test', 'test'], server);
    const onConnection = r.run(['test', 'test']);
    for (const [events, listener] of listeners) events.subscribe(listener);
    try {
      await Promise.all([once, onConnection]);
      await turns();
      expect(late).toEqual([]);
    } finally {
      for (const [events, listener] of listeners) events.unsubscribe(listener);
    }

    const again = record();
    await remctl(host, ['test', 'test'], server);
    const ids = [published[0]!.fields.connectionId as number, again[0]!.fields.connectionId as number];
    expect(ids[1]).toBe(ids[0] + 1);
  });
});

beforeAll(() => {
  // Tracing is per process: a subscriber left over from elsewhere would make these tests lie.
  expect(tracingChannel('remctl:open').hasSubscribers).toBe(false);
  expect(tracingChannel('remctl:command').hasSubscribers).toBe(false);
});
