// Every error code, provoked for real: a refused port, a name that does not resolve, a listener
// that never answers, a wrong principal, a missing ticket cache, a server that is someone else,
// a server killed mid-command, garbage from a fake server. Each test checks the code, that the
// error is a RemctlError, and the system error under it where there is one.

import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, test } from 'vitest';
import {
  MaxBufferError,
  Remctl,
  RemctlError,
  RemctlNotOpenedError,
  RemctlProtocolError,
  remctl,
  remctlSync,
  spawn,
} from '../dist/index.js';
import { TOKEN_DATA_V2, garbageServer, silentServer, tamperingProxy, tokenHeader } from './fault-servers.js';
import { rejection } from './probes.js';
import { realm } from './realm-context.mjs';
import { freePort, startExtraRemctld } from './realm-control.mjs';

const settings = realm();
const { host } = settings;
const server = { port: settings.port, principal: settings.principal };

function failureOf(thrown: () => unknown): unknown {
  try {
    thrown();
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to throw, but it returned');
}

/** What a RemctlProcess's status rejects with. */
async function spawnFailure(child: ReturnType<typeof spawn>): Promise<unknown> {
  child.stdout.resume();
  child.stderr.resume();
  return (await rejection(child.status)).error;
}

describe('ERR_REMCTL_CONNECT', () => {
  test('a refused port: the cause is the system error, ECONNREFUSED from connect, with the address and port', async () => {
    const port = await freePort();
    const expected = {
      code: 'ERR_REMCTL_CONNECT',
      message: `cannot connect to localhost (port ${port}): Connection refused`,
      cause: { code: 'ECONNREFUSED', errno: -111, syscall: 'connect', address: expect.stringMatching(/^(127\.0\.0\.1|::1)$/), port },
    };
    for (const error of [
      (await rejection(remctl(host, ['test', 'test'], { port, principal: settings.principal }))).error,
      (await rejection(Remctl.connect(host, { port, principal: settings.principal }))).error,
      await spawnFailure(spawn(host, ['test', 'test'], { port, principal: settings.principal })),
      failureOf(() => remctlSync(host, ['test', 'test'], { port, principal: settings.principal })),
    ]) {
      expect(error).toBeInstanceOf(RemctlError);
      expect(error).toMatchObject(expected);
      const cause = (error as Error).cause as Error;
      expect(cause).toBeInstanceOf(Error);
      expect(cause.message).toMatch(new RegExp(`^connect ECONNREFUSED (127\\.0\\.0\\.1|::1):${port}$`));
    }
  });

  test('a name that does not resolve: the cause is getaddrinfo\'s, ENOTFOUND (or EAI_AGAIN without a resolver), with the host name', async () => {
    const { error } = await rejection(remctl('no-such-host.invalid', ['test', 'test'], { port: 4373, principal: settings.principal }));
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).toMatchObject({
      code: 'ERR_REMCTL_CONNECT',
      message: expect.stringMatching(/^unknown host no-such-host\.invalid: /),
      cause: { code: expect.stringMatching(/^(ENOTFOUND|EAI_AGAIN)$/), syscall: 'getaddrinfo', hostname: 'no-such-host.invalid' },
    });
  });

  test('a source address this host does not have: the cause is EADDRNOTAVAIL from bind, with that address', async () => {
    const { error } = await rejection(remctl(host, ['test', 'test'], { ...server, sourceIp: '192.0.2.1' }));
    expect(error).toMatchObject({
      code: 'ERR_REMCTL_CONNECT',
      cause: { code: 'EADDRNOTAVAIL', errno: -99, syscall: 'bind', address: '192.0.2.1' },
    });
  });
});

describe('ERR_REMCTL_TIMEOUT', () => {
  test('a listener that never answers the handshake: every entry point rejects with ERR_REMCTL_TIMEOUT', async () => {
    const listener = await silentServer();
    try {
      const options = { port: listener.port, principal: settings.principal, idleTimeout: 1000 };
      for (const error of [
        (await rejection(remctl(host, ['test', 'test'], options))).error,
        (await rejection(Remctl.connect(host, options))).error,
        await spawnFailure(spawn(host, ['test', 'test'], options)),
        failureOf(() => remctlSync(host, ['test', 'test'], options)),
      ]) {
        expect(error).toBeInstanceOf(RemctlError);
        expect(error).toMatchObject({ code: 'ERR_REMCTL_TIMEOUT', message: expect.stringMatching(/timed out/) });
      }
    } finally {
      await listener.close();
    }
  });

  test('a command silent for longer than the timeout: ERR_REMCTL_TIMEOUT, in run(), output() and a stream', async () => {
    const r = await Remctl.connect(host, { ...server, idleTimeout: 1000 });
    try {
      const ran = await rejection(r.run(['test', 'sleep', '3']));
      expect(ran.error).toMatchObject({ code: 'ERR_REMCTL_TIMEOUT', message: 'error receiving token: timed out' });
      await r.command(['test', 'sleep', '3']);
      expect((await rejection(r.output())).error).toMatchObject({ code: 'ERR_REMCTL_TIMEOUT' });
      expect(await spawnFailure(r.spawn(['test', 'sleep', '3']))).toMatchObject({ code: 'ERR_REMCTL_TIMEOUT' });
    } finally {
      await r.close();
    }
    expect((await rejection(remctl(host, ['test', 'sleep', '3'], { ...server, idleTimeout: 1000 }))).error).toMatchObject({
      code: 'ERR_REMCTL_TIMEOUT',
    });
  });
});

describe('ERR_REMCTL_AUTH', () => {
  test('a server principal the KDC does not know', async () => {
    const principal = `host/no-such-service.invalid@${settings.realm}`;
    for (const error of [
      (await rejection(remctl(host, ['test', 'test'], { port: settings.port, principal }))).error,
      failureOf(() => remctlSync(host, ['test', 'test'], { port: settings.port, principal })),
    ]) {
      expect(error).toBeInstanceOf(RemctlError);
      expect(error).toMatchObject({ code: 'ERR_REMCTL_AUTH', message: expect.stringMatching(/^GSS-API error initializing context: /) });
    }
  });

  test('a ticket cache that does not exist', async () => {
    const ccache = `FILE:${settings.dir}/no-such-ccache`;
    const { error } = await rejection(remctl(host, ['test', 'test'], { ...server, ccache }));
    expect(error).toMatchObject({ code: 'ERR_REMCTL_AUTH', message: expect.stringMatching(/^GSS-API error /) });
  });

  test('a server that is not the principal asked for refuses the ticket and hangs up: still ERR_REMCTL_AUTH, not a lost connection', async () => {
    const impostor = await startExtraRemctld(settings, {
      principal: settings.otherServicePrincipal,
      keytab: settings.otherServiceKeytab,
    });
    try {
      const { error } = await rejection(Remctl.connect(host, { port: impostor.port, principal: settings.principal }));
      expect(error).toMatchObject({ code: 'ERR_REMCTL_AUTH' });
    } finally {
      await impostor.stop();
    }
  });
});

describe('ERR_REMCTL_CONNECTION_LOST', () => {
  test('a remctld killed while its command runs: run(), remctl() and a stream reject with ERR_REMCTL_CONNECTION_LOST', async () => {
    const daemon = await startExtraRemctld(settings, { principal: settings.principal, keytab: settings.serviceKeytab });
    const where = { port: daemon.port, principal: settings.principal };
    try {
      const r = await Remctl.connect(host, where);
      const child = spawn(host, ['test', 'sleep', '30'], where);
      const calls = [rejection(r.run(['test', 'sleep', '30'])), rejection(remctl(host, ['test', 'sleep', '30'], where)), spawnFailure(child)];
      // Until all three commands are running on the server.
      for (let tries = 0; ; tries++) {
        const log = await readFile(daemon.logFile, 'utf8');
        if ((log.match(/COMMAND from .*: test sleep 30/g) ?? []).length >= 3) break;
        if (tries > 200) throw new Error(`the commands never reached remctld:\n${log}`);
        await sleep(25);
      }
      // SIGKILL, so that no process of it is left to report the command's end.
      process.kill(-daemon.pid, 'SIGKILL');
      const [ran, once, streamed] = await Promise.all(calls);
      for (const error of [ran.error, once.error, streamed]) {
        expect(error).toBeInstanceOf(RemctlError);
        expect(error).toMatchObject({ code: 'ERR_REMCTL_CONNECTION_LOST', message: expect.stringMatching(/^error receiving token: /) });
      }
      await r.close();
    } finally {
      await daemon.stop();
    }
  });
});

describe('ERR_REMCTL_BAD_RESPONSE', () => {
  test('a server that answers the handshake with HTTP, then waits or hangs up', async () => {
    for (const close of [false, true]) {
      const fake = await garbageServer(Buffer.from('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'), { close });
      try {
        const { error } = await rejection(Remctl.connect(host, { port: fake.port, principal: settings.principal, idleTimeout: 2000 }));
        expect(error).toBeInstanceOf(RemctlError);
        expect(error).toMatchObject({ code: 'ERR_REMCTL_BAD_RESPONSE', message: 'error receiving token: token too larger' });
      } finally {
        await fake.close();
      }
    }
  });

  test('after authentication: a token that is not GSS-API, and a length prefix of 4 GiB', async () => {
    for (const injection of [Buffer.concat([tokenHeader(TOKEN_DATA_V2, 40), Buffer.alloc(40, 7)]), tokenHeader(TOKEN_DATA_V2, 0xfffffff0)]) {
      const proxy = await tamperingProxy(settings.port, injection);
      try {
        const r = await Remctl.connect(host, { port: proxy.port, principal: settings.principal, idleTimeout: 2000 });
        const { error } = await rejection(r.run(['test', 'test']));
        expect(error).toBeInstanceOf(RemctlError);
        expect(error).not.toBeInstanceOf(RemctlProtocolError);
        expect(error).toMatchObject({ code: 'ERR_REMCTL_BAD_RESPONSE' });
        const child = spawn(host, ['test', 'test'], { port: proxy.port, principal: settings.principal, idleTimeout: 2000 });
        expect(await spawnFailure(child)).toMatchObject({ code: 'ERR_REMCTL_BAD_RESPONSE' });
        await r.close();
      } finally {
        await proxy.close();
      }
    }
  });
});

describe('the other codes', () => {
  test('a call on a Remctl never opened: RemctlNotOpenedError, ERR_REMCTL_NOT_OPEN', async () => {
    const { error } = await rejection(new Remctl().run(['test', 'test']));
    expect(error).toBeInstanceOf(RemctlNotOpenedError);
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).toMatchObject({ code: 'ERR_REMCTL_NOT_OPEN' });
  });

  test('output past maxBuffer: MaxBufferError, a RemctlError with code ERR_REMCTL_MAXBUFFER', async () => {
    const { error } = await rejection(remctl(host, ['test', 'big', '100000'], { ...server, maxBuffer: 1000 }));
    expect(error).toBeInstanceOf(MaxBufferError);
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).toMatchObject({ code: 'ERR_REMCTL_MAXBUFFER' });
  });

  test("an error token from the server: RemctlProtocolError, a RemctlError whose code is the protocol's name", async () => {
    const { error } = await rejection(remctl(host, ['no-such-command', 'x'], server));
    expect(error).toBeInstanceOf(RemctlProtocolError);
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).toMatchObject({ code: 'ERROR_UNKNOWN_COMMAND', errorCode: 5 });
  });

  test('a command sent while the last one is unread: ERR_REMCTL_OUTPUT_PENDING', async () => {
    const r = await Remctl.connect(host, server);
    try {
      await r.command(['test', 'test']);
      const { error } = await rejection(r.run(['test', 'test']));
      expect(error).toBeInstanceOf(RemctlError);
      expect(error).toMatchObject({ code: 'ERR_REMCTL_OUTPUT_PENDING' });
    } finally {
      await r.close();
    }
  });
});
