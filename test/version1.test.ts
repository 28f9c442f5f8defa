// A server that speaks only protocol version 1 (remctl before 2.0), reached for real: the
// realm's remctld behind a proxy that clears the version flag from the client's tokens, so that
// remctld answers as to an old client. Version 1 closes the connection after each command's
// output; everything must work as with the C client, remctl(1), through the same proxy.

import { spawn as spawnProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Remctl, RemctlError, RemctlPool, _remctl, remctl, spawn } from '../dist/index.js';
import { version1Proxy, type TestServer } from './fault-servers.js';
import { rejection } from './probes.js';
import { realm, runCRemctl } from './realm-context.mjs';

const settings = realm();
const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
let proxy: TestServer;

beforeAll(async () => {
  proxy = await version1Proxy(settings.port);
});
afterAll(async () => {
  await proxy.close();
});

const through = () => ({ port: proxy.port, principal: settings.principal });

/** Our command-line tool, as remctl(1) is run by runCRemctl. */
function ourCli(args: string[]): Promise<{ stdout: Buffer; stderr: string; status: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawnProcess(process.execPath, [CLI, ...args], { env: { ...process.env, ...settings.env } });
    const stdout: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (status) => resolve({ stdout: Buffer.concat(stdout), stderr, status }));
  });
}

const commands = [
  ['test', 'test'],
  ['test', 'status', '3'],
  ['test', 'echo', 'one', 'two'],
  ['test', 'big', '200000'],
];

describe('a server speaking protocol version 1', () => {
  test('the proxy really makes remctld speak version 1: remctl(1) gets no stderr stream and NOOP is refused', async () => {
    // Version 1 has no separate stderr: what the command wrote there arrives as stdout.
    const c = await runCRemctl(['test', 'echo', 'x'], { port: proxy.port });
    expect(c.stdout.toString()).toBe('x\nstderr line\n');
    expect(c.stderr).toBe('');
    const r = _remctl.remctl_new();
    expect(await _remctl.remctl_open(r, settings.host, proxy.port, settings.principal)).toBe(true);
    expect(await _remctl.remctl_noop(r)).toBe(false);
    expect(_remctl.remctl_error(r)).toBe('NOOP message not supported');
    await _remctl.remctl_close(r);
  });

  for (const command of commands) {
    // (remctlSync would block this thread, and with it the proxy in this process.)
    test(`remctl() and the CLI give what remctl(1) gives for ${command.join(' ')}`, async () => {
      const c = await runCRemctl(command, { port: proxy.port });
      // remctl(1) reports an empty version 1 output as a failed write (its fwrite of no bytes
      // returns 0), and still exits with the command's status; that message is its bug, not the
      // server's answer, and we do not copy it.
      if (c.stdout.length === 0) c.stderr = c.stderr.replace('remctl: local write of command output failed\n', '');
      const simple = await remctl(settings.host, command, through());
      expect({ stdout: simple.stdout, stderr: simple.stderr.toString(), status: simple.status }).toStrictEqual({ stdout: c.stdout, stderr: c.stderr, status: c.status });
      const cli = await ourCli(['-p', String(proxy.port), '-s', settings.principal, settings.host, ...command]);
      expect(cli).toStrictEqual({ stdout: c.stdout, stderr: c.stderr, status: c.status });
    });
  }

  test('a Remctl runs several commands, each on a new connection as libremctl opens them, and each reaches the server once', async () => {
    const before = proxy.accepted;
    const logBefore = (await readFile(settings.remctldLog, 'utf8')).length;
    const connection = await Remctl.connect(settings.host, through());
    const outputs: string[] = [];
    for (let i = 0; i < 3; i++) outputs.push((await connection.run(['test', 'echo', `v1-run-${i}`], { encoding: 'utf8' })).stdout);
    const child = connection.spawn(['test', 'echo', 'v1-spawn']);
    let streamed = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (streamed += chunk));
    expect(await child.status).toBe(0);
    await connection.close();
    expect(outputs).toStrictEqual([0, 1, 2].map((i) => `v1-run-${i}\nstderr line\n`));
    expect(streamed).toBe('v1-spawn\nstderr line\n');
    // One connection for the open (and our check of the protocol), then one per command.
    expect(proxy.accepted - before).toBeGreaterThanOrEqual(5);
    const log = (await readFile(settings.remctldLog, 'utf8')).slice(logBefore);
    for (const word of ['v1-run-0', 'v1-run-1', 'v1-run-2', 'v1-spawn']) {
      expect(log.match(new RegExp(`COMMAND from .*: test echo ${word}\\n`, 'g'))).toHaveLength(1);
    }
  });

  test('Remctl#noop() rejects with ERR_REMCTL_UNSUPPORTED and libremctl\'s text, without the network, and the Remctl stays open', async () => {
    await using r = await Remctl.connect(settings.host, through());
    await r.run(['test', 'test']);
    const before = proxy.accepted;
    const { error } = await rejection(r.noop());
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).toMatchObject({ code: 'ERR_REMCTL_UNSUPPORTED', message: 'NOOP message not supported' });
    expect(proxy.accepted).toBe(before);
    expect(r.opened).toBe(true);
    expect((await r.run(['test', 'echo', 'after-noop'], { encoding: 'utf8' })).stdout).toBe('after-noop\nstderr line\n');
  });

  test('a pool with noopInterval keeps an idle connection to a server too old for NOOP: the refused noop costs no network and retires nothing, and the next call reuses it', async () => {
    const pool = new RemctlPool({ noopInterval: 100, keepAliveTimeout: 5000 });
    try {
      await pool.run(settings.host, ['test', 'test'], through());
      const before = proxy.accepted;
      // Several noop intervals: the first noop is refused, and no other is tried.
      await sleep(600);
      expect(pool.stats).toMatchObject({ connections: 1, idle: 1, opened: 1 });
      expect(proxy.accepted).toBe(before);
      await pool.run(settings.host, ['test', 'test'], through());
      expect(pool.stats).toMatchObject({ connections: 1, opened: 1, reused: 1 });
    } finally {
      await pool.close();
    }
  });

  test('spawn() streams a version 1 output and ends with its status', async () => {
    const child = spawn(settings.host, ['test', 'status', '3'], through());
    child.stdout.resume();
    expect(await child.status).toBe(3);
  });
});
