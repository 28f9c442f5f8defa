// Tests of the test realm itself, through Russ Allbery's C client. Commands run against the
// shared realm from global-setup.mjs; anything that stops a daemon uses a realm of its own, so
// that test files running alongside never see the shared realm's daemons go away.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { bigPattern, startRealm } from './realm.mjs';
import { realm, runCRemctl } from './realm-context.mjs';
import { kinit, processIsAlive, startExtraRemctld } from './realm-control.mjs';

const REALM_MODULE = new URL('./realm.mjs', import.meta.url).href;
const REALM_CONTROL = new URL('./realm-control.mjs', import.meta.url).href;

/** @param {string} text */
const bytes = (text) => Buffer.from(text);

/** @param {number} pid */
function expectNoProcess(pid) {
  expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
}

/**
 * Runs ES module source in a node process of its own, as a test process that can die.
 * @param {string} source
 * @param {(child: import('node:child_process').ChildProcess, firstLine: string) => void} [onFirstLine]
 * @returns {Promise<{ code: number | null, signal: NodeJS.Signals | null, output: string }>}
 */
function runNode(source, onFirstLine) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '--eval', source], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      const hadLine = output.includes('\n');
      output += chunk;
      if (!hadLine && output.includes('\n')) onFirstLine?.(child, output.slice(0, output.indexOf('\n')));
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve({ code, signal, output }));
  });
}

describe('the shared realm', () => {
  test("the realm's remctld runs `test test` for the client through the C remctl client", async () => {
    const result = await runCRemctl(['test', 'test']);
    expect(result).toMatchObject({ status: 0, stderr: '' });
    expect(result.stdout).toEqual(bytes('hello world\n'));
  });

  test('remctl without -s authenticates to host/localhost, the default principal for localhost', async () => {
    const result = await runCRemctl(['test', 'test'], { principal: null });
    expect(result.status).toBe(0);
    expect(result.stdout).toEqual(bytes('hello world\n'));
  });

  test("test workers inherit the realm's Kerberos environment from the global setup", () => {
    const settings = realm();
    expect(process.env.KRB5_CONFIG).toBe(settings.env.KRB5_CONFIG);
    expect(process.env.KRB5_KDC_PROFILE).toBe(settings.env.KRB5_KDC_PROFILE);
    expect(process.env.KRB5CCNAME).toBe(settings.ccache);
    expect(JSON.parse(process.env.REMCTL_TEST_REALM ?? '{}')).toEqual(settings);
  });

  test('test status N exits with status N and prints nothing', async () => {
    for (const status of [0, 1, 7, 255]) {
      const result = await runCRemctl(['test', 'status', String(status)]);
      expect(result).toMatchObject({ status, stderr: '' });
      expect(result.stdout).toHaveLength(0);
    }
  });

  test('test stderr writes only to stderr and exits with status 2', async () => {
    const result = await runCRemctl(['test', 'stderr']);
    expect(result).toMatchObject({ status: 2, stderr: 'this is stderr\n' });
    expect(result.stdout).toHaveLength(0);
  });

  test('test echo prints each argument on a line of its own, bytes above 0x7F included, and a line on stderr', async () => {
    const result = await runCRemctl(['test', 'echo', 'one', 'two words', 'naïve ☃']);
    expect(result).toMatchObject({ status: 0, stderr: 'stderr line\n' });
    expect(result.stdout).toEqual(bytes('one\ntwo words\nnaïve ☃\n'));
  });

  test('test stdin gets its argument on standard input and copies it back unchanged', async () => {
    const result = await runCRemctl(['test', 'stdin', 'fed through stdin']);
    expect(result.status).toBe(0);
    expect(result.stdout).toEqual(bytes('fed through stdin'));
  });

  test('test stdinsize counts the bytes of its argument, which arrives on standard input', async () => {
    expect((await runCRemctl(['test', 'stdinsize', 'twelve bytes'])).stdout).toEqual(bytes('12\n'));
    expect((await runCRemctl(['test', 'stdinsize'])).stdout).toEqual(bytes('0\n'));
  });

  test('test whoami reports the principal the client authenticated as', async () => {
    const settings = realm();
    expect((await runCRemctl(['test', 'whoami'])).stdout).toEqual(bytes(`${settings.clientPrincipal}\n`));
    const asOther = await runCRemctl(['test', 'whoami'], { ccache: settings.otherCcache });
    expect(asOther.stdout).toEqual(bytes(`${settings.otherPrincipal}\n`));
  });

  test('test sleep waits fractional seconds before saying so', async () => {
    const started = Date.now();
    const result = await runCRemctl(['test', 'sleep', '0.3']);
    expect(result.stdout).toEqual(bytes('slept 0.3\n'));
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  });

  test('test big N writes exactly the first N bytes of bigPattern', async () => {
    for (const size of [0, 1, 64, 65, 66, 1_000_003, 16 * 1024 * 1024]) {
      const result = await runCRemctl(['test', 'big', String(size)]);
      expect(result.status).toBe(0);
      expect(result.stdout.equals(bigPattern(size))).toBe(true);
    }
  });

  test('restricted is refused to client@ as access denied and runs for other@', async () => {
    const settings = realm();
    expect(await runCRemctl(['restricted', 'anything'])).toMatchObject({ status: 255, stderr: 'Access denied\n' });
    const asOther = await runCRemctl(['restricted', 'anything'], { ccache: settings.otherCcache });
    expect(asOther.status).toBe(0);
    expect(asOther.stdout).toEqual(bytes('restricted ok\n'));
  });

  test('commands and subcommands missing from remctl.conf are refused as unknown', async () => {
    for (const command of [['nonexistent'], ['test'], ['test', 'bogus']]) {
      expect(await runCRemctl(command)).toMatchObject({ status: 255, stderr: 'Unknown command\n' });
    }
  });

  test('test killed, a command that dies of SIGKILL, shows up in the C client as status 255 without output', async () => {
    const result = await runCRemctl(['test', 'killed']);
    expect(result).toMatchObject({ status: 255, stderr: '' });
    expect(result.stdout).toHaveLength(0);
  });

  test('an extra remctld serves host/other, and a client asking for host/localhost there is refused', async () => {
    const settings = realm();
    const extra = await startExtraRemctld(settings, {
      principal: settings.otherServicePrincipal,
      keytab: settings.otherServiceKeytab,
    });
    try {
      const right = await runCRemctl(['test', 'test'], { port: extra.port, principal: settings.otherServicePrincipal });
      expect(right.stdout).toEqual(bytes('hello world\n'));
      const wrong = await runCRemctl(['test', 'test'], { port: extra.port });
      expect(wrong.status).not.toBe(0);
      expect(wrong.stderr).toMatch(/GSS-API error initializing context/);
      expect(wrong.stdout).toHaveLength(0);
    } finally {
      await extra.stop();
    }
    expect(existsSync(extra.pidFile)).toBe(false);
  });
});

describe('a realm of its own', () => {
  /** @type {import('./realm.mjs').Realm} */
  let own;

  beforeAll(async () => {
    own = await startRealm();
  });

  afterAll(async () => {
    await own?.stop();
  });

  test('restartRemctld brings remctld back on the same port with a new process', async () => {
    const before = own.remctldPid;
    const newPid = await own.restartRemctld();
    expect(newPid).not.toBe(before);
    expect(own.remctldPid).toBe(newPid);
    expectNoProcess(/** @type {number} */ (before));
    const result = await runCRemctl(['test', 'test'], { settings: own.settings });
    expect(result.stdout).toEqual(bytes('hello world\n'));
  });

  test('stopRemctld refuses connections until startRemctld listens again on the same port', async () => {
    await own.stopRemctld();
    expect(own.remctldPid).toBeUndefined();
    const refused = await runCRemctl(['test', 'test'], { settings: own.settings });
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(/Connection refused/);
    await own.startRemctld();
    expect((await runCRemctl(['test', 'test'], { settings: own.settings })).status).toBe(0);
  });

  test('stopKdc makes kinit fail until startKdc brings the KDC back on the same port', async () => {
    const ccache = join(own.dir, 'kdc-test.ccache');
    await own.stopKdc();
    expect(own.kdcPid).toBeUndefined();
    await expect(own.kinit(own.clientPrincipal, own.clientKeytab, ccache)).rejects.toThrow(/kinit/);
    await own.startKdc();
    await own.kinit(own.clientPrincipal, own.clientKeytab, ccache);
    const result = await runCRemctl(['test', 'whoami'], { settings: own.settings, ccache: `FILE:${ccache}` });
    expect(result.stdout).toEqual(bytes(`${own.clientPrincipal}\n`));
  });

  test('a ticket made with kinit -l 5s no longer gets the client in once it has expired', async () => {
    const ccache = join(own.dir, 'short.ccache');
    await kinit(own.settings, own.clientPrincipal, own.clientKeytab, ccache, ['-l', '5s']);
    const options = { settings: own.settings, ccache: `FILE:${ccache}` };
    expect((await runCRemctl(['test', 'test'], options)).status).toBe(0);
    await sleep(6_000);
    const expired = await runCRemctl(['test', 'test'], options);
    expect(expired.status).not.toBe(0);
    expect(expired.stderr).toMatch(/expired/i);
  });
});

describe('starting and stopping realms', () => {
  test('a remctld restarted by another process is still stopped by the realm', async () => {
    const target = await startRealm();
    const restarted = await runNode(`
      import { restartRemctld } from ${JSON.stringify(REALM_CONTROL)};
      console.log(await restartRemctld(${JSON.stringify(target.settings)}));
    `);
    const pid = Number.parseInt(restarted.output, 10);
    expect(target.remctldPid).toBe(pid);
    await target.stop();
    // Not a child of this process, so nobody here reaps it: it may linger as a zombie for a while.
    expect(processIsAlive(pid)).toBe(false);
  });

  test('stop leaves no daemon and no directory behind, not even a command still running', async () => {
    const doomed = await startRealm();
    const extra = await doomed.startExtraRemctld({
      principal: doomed.otherServicePrincipal,
      keytab: doomed.otherServiceKeytab,
    });
    const pids = [doomed.kdcPid, doomed.remctldPid, extra.pid];
    const running = runCRemctl(['test', 'sleep', '60'], { settings: doomed.settings });
    await vi.waitFor(() => expect(readFileSync(doomed.remctldLog, 'utf8')).toContain('test sleep 60'));

    const started = Date.now();
    await doomed.stop();
    await doomed.stop();

    expect(existsSync(doomed.dir)).toBe(false);
    for (const pid of pids) await vi.waitFor(() => expectNoProcess(/** @type {number} */ (pid)));
    const interrupted = await running;
    expect(interrupted.status).not.toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  test('two realms started at once get different ports and directories, and keep their keys apart', async () => {
    const [first, second] = await Promise.all([startRealm(), startRealm()]);
    try {
      expect(first.dir).not.toBe(second.dir);
      expect(new Set([first.port, first.kdcPort, second.port, second.kdcPort]).size).toBe(4);
      for (const each of [first, second]) {
        expect((await runCRemctl(['test', 'test'], { settings: each.settings })).status).toBe(0);
      }
      const crossed = await runCRemctl(['test', 'test'], { settings: second.settings, ccache: first.ccache });
      expect(crossed.status).not.toBe(0);
    } finally {
      await Promise.all([first.stop(), second.stop()]);
    }
  });

  test('a realm whose process exits without stop() is torn down on the way out', async () => {
    const exited = await runNode(`
      import { startRealm } from ${JSON.stringify(REALM_MODULE)};
      const realm = await startRealm();
      console.log(JSON.stringify({ dir: realm.dir, pids: [realm.kdcPid, realm.remctldPid] }));
      process.exit(0);
    `);
    const { dir, pids } = JSON.parse(exited.output);
    expect(existsSync(dir)).toBe(false);
    for (const pid of pids) await vi.waitFor(() => expect(processIsAlive(pid)).toBe(false));
  });

  test('a realm whose process is killed outright is torn down by its watchdog', async () => {
    /** @type {{ dir: string, pids: number[] } | undefined} */
    let started;
    await runNode(
      `
        import { startRealm } from ${JSON.stringify(REALM_MODULE)};
        const realm = await startRealm();
        console.log(JSON.stringify({ dir: realm.dir, pids: [realm.kdcPid, realm.remctldPid] }));
        setInterval(() => {}, 60_000);
      `,
      (child, firstLine) => {
        started = JSON.parse(firstLine);
        child.kill('SIGKILL');
      },
    );
    const { dir, pids } = /** @type {{ dir: string, pids: number[] }} */ (started);
    await vi.waitFor(() => expect(existsSync(dir)).toBe(false), { timeout: 5_000, interval: 100 });
    for (const pid of pids) expect(processIsAlive(pid)).toBe(false);
  });

  test('startRealm names an option it does not know', async () => {
    // @ts-expect-error: the misspelling is the point.
    await expect(startRealm({ relam: 'X' })).rejects.toThrow('Unknown startRealm option "relam"; the only option is "realm"');
  });
});

describe('bigPattern', () => {
  test('repeats the 65-byte line of digits, letters, - and + and cuts it at n bytes', () => {
    const line = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-+\n';
    expect(bigPattern(0)).toHaveLength(0);
    expect(bigPattern(3).toString()).toBe('012');
    expect(bigPattern(130).toString()).toBe(line + line);
    expect(bigPattern(140).toString()).toBe(`${line}${line}0123456789`);
  });
});
