// A throwaway Kerberos realm with a KDC and a remctld, for the test suite and the demo.
//
// Everything a realm needs lives in one temporary directory: configuration, database, keytabs,
// ticket caches, logs, pid files. Its daemons listen on free loopback ports, so any number of
// realms can run side by side. Run this file directly to keep a realm up for manual debugging.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  freePort,
  kinit,
  killAllDaemonsSync,
  onFreePort,
  pidDirectory,
  readPid,
  remctldArgs,
  restartRemctld,
  runTool,
  startExtraRemctld,
  startKdc,
  startRemctld,
  stopAllDaemons,
  stopKdc,
  stopRemctld,
} from './realm-control.mjs';

/** @typedef {import('./realm-control.mjs').RealmSettings} RealmSettings */
/** @typedef {import('./realm-control.mjs').ExtraRemctld} ExtraRemctld */

/**
 * A running realm: its settings, plus the means to control its daemons.
 * @typedef {RealmSettings & {
 *   settings: Readonly<RealmSettings>,
 *   readonly remctldPid: number | undefined,
 *   readonly kdcPid: number | undefined,
 *   stop(): Promise<void>,
 *   restartRemctld(): Promise<number>,
 *   stopRemctld(): Promise<void>,
 *   startRemctld(): Promise<number>,
 *   stopKdc(): Promise<void>,
 *   startKdc(): Promise<number>,
 *   startExtraRemctld(identity: { principal: string, keytab: string, conf?: string }): Promise<ExtraRemctld>,
 *   kinit(principal: string, keytab: string, ccache: string, extraArgs?: string[]): Promise<void>,
 *   toJSON(): RealmSettings,
 * }} Realm
 */

const REALM_FILES = fileURLToPath(new URL('./realm/', import.meta.url));
const REALM_CONTROL = new URL('./realm-control.mjs', import.meta.url).href;

/** One line of the output of `test big`; the line is 65 bytes long, newline included. */
const BIG_LINE = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-+\n');

/**
 * The exact output of the remctl command `test big n`.
 * @param {number} n
 */
export function bigPattern(n) {
  return Buffer.alloc(n, BIG_LINE);
}

/**
 * Creates a realm in a new temporary directory and starts its KDC and remctld. Nothing in this
 * process's environment changes: the caller decides whether to apply `realm.env`.
 * @param {{ realm?: string }} [options]
 * @returns {Promise<Realm>}
 */
export async function startRealm(options = {}) {
  const { realm: realmName = 'TEST.REMCTL', ...unknown } = options;
  const unknownNames = Object.keys(unknown);
  if (unknownNames.length > 0) {
    throw new TypeError(`Unknown startRealm option "${unknownNames[0]}"; the only option is "realm"`);
  }

  const dir = await mkdtemp(join(tmpdir(), 'remctl-realm-'));
  const settings = describeRealm(dir, realmName);
  const killOnExit = () => {
    killAllDaemonsSync(dir);
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', killOnExit);
  const watchdog = startWatchdog(dir);

  /** @type {Promise<void> | undefined} */
  let stopping;
  const stop = () =>
    (stopping ??= (async () => {
      await stopAllDaemons(dir);
      await rm(dir, { recursive: true, force: true });
      process.removeListener('exit', killOnExit);
      try {
        process.kill(watchdog);
      } catch {
        // It has gone already.
      }
    })());

  try {
    await bringUp(settings);
  } catch (error) {
    await stop();
    throw error;
  }

  Object.freeze(settings.env);
  Object.freeze(settings);
  return {
    ...settings,
    settings,
    get remctldPid() {
      return readPid(settings.remctldPidFile);
    },
    get kdcPid() {
      return readPid(settings.kdcPidFile);
    },
    stop,
    restartRemctld: () => restartRemctld(settings),
    stopRemctld: () => stopRemctld(settings),
    startRemctld: () => startRemctld(settings),
    stopKdc: () => stopKdc(settings),
    startKdc: () => startKdc(settings),
    startExtraRemctld: (identity) => startExtraRemctld(settings, identity),
    kinit: (principal, keytab, ccache, extraArgs) => kinit(settings, principal, keytab, ccache, extraArgs),
    toJSON: () => settings,
  };
}

/**
 * Creates the realm's database in its directory, starts its KDC, gets the clients their
 * tickets and starts its remctld.
 * @param {RealmSettings} settings filled in with the ports the daemons got
 */
async function bringUp(settings) {
  await mkdir(pidDirectory(settings.dir));
  // kdb5_util reads the configuration too, so it names a port before the KDC holds one.
  settings.kdcPort = await freePort();
  await writeKerberosConfiguration(settings);
  await createDatabase(settings);
  await onFreePort(async (port) => {
    settings.kdcPort = port;
    await writeKerberosConfiguration(settings);
    return startKdc(settings);
  }, settings.kdcPort);
  await kinit(settings, settings.clientPrincipal, settings.clientKeytab, settings.ccache);
  await kinit(settings, settings.otherPrincipal, settings.otherKeytab, settings.otherCcache);

  await writeRemctlConfiguration(settings);
  await onFreePort(async (port) => {
    settings.port = port;
    settings.remctldArgs = remctldArgs({
      port,
      principal: settings.principal,
      keytab: settings.serviceKeytab,
      confPath: settings.confPath,
      pidFile: settings.remctldPidFile,
    });
    return startRemctld(settings);
  });
}

/**
 * Names every file of a realm; the ports are filled in once daemons hold them.
 * @param {string} dir
 * @param {string} realm
 * @returns {RealmSettings}
 */
function describeRealm(dir, realm) {
  const pids = pidDirectory(dir);
  const ccachePath = join(dir, 'client.ccache');
  const otherCcachePath = join(dir, 'other.ccache');
  const krb5ConfPath = join(dir, 'krb5.conf');
  const kdcConfPath = join(dir, 'kdc.conf');
  const kdcPidFile = join(pids, 'kdc.pid');
  return {
    dir,
    realm,
    host: 'localhost',
    port: 0,
    kdcPort: 0,
    principal: `host/localhost@${realm}`,
    serviceKeytab: join(dir, 'service.keytab'),
    otherServicePrincipal: `host/other@${realm}`,
    otherServiceKeytab: join(dir, 'other-service.keytab'),
    clientPrincipal: `client@${realm}`,
    clientKeytab: join(dir, 'client.keytab'),
    otherPrincipal: `other@${realm}`,
    otherKeytab: join(dir, 'other.keytab'),
    ccache: `FILE:${ccachePath}`,
    ccachePath,
    otherCcache: `FILE:${otherCcachePath}`,
    otherCcachePath,
    confPath: join(dir, 'remctl.conf'),
    krb5ConfPath,
    kdcConfPath,
    env: { KRB5_CONFIG: krb5ConfPath, KRB5_KDC_PROFILE: kdcConfPath, KRB5CCNAME: `FILE:${ccachePath}` },
    kdcPidFile,
    kdcLog: join(dir, 'kdc.log'),
    // The pid file's path puts the realm directory in the KDC's command line; see daemonState().
    kdcArgs: ['-n', '-r', realm, '-P', kdcPidFile],
    remctldPidFile: join(pids, 'remctld.pid'),
    remctldLog: join(dir, 'remctld.log'),
    remctldArgs: [],
  };
}

/** @param {RealmSettings} settings */
async function writeKerberosConfiguration(settings) {
  const { dir, realm, kdcPort } = settings;
  // No DNS, no reverse lookups and no canonicalization: "localhost" must stay "localhost" so
  // that the default service principal is host/localhost. TCP, because it is what remctl users
  // run into and what the KDC's readiness check watches.
  const krb5Conf = `[libdefaults]
    default_realm = ${realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    dns_canonicalize_hostname = false
    ticket_lifetime = 1h
    udp_preference_limit = 1

[realms]
    ${realm} = {
        kdc = 127.0.0.1:${kdcPort}
    }

[domain_realm]
    localhost = ${realm}
`;
  // kdc_listen and kdc_tcp_listen are the current names of kdc_ports and kdc_tcp_ports; unlike
  // a bare port, an address keeps the KDC off every interface but loopback.
  const kdcConf = `[kdcdefaults]
    kdc_listen = 127.0.0.1:${kdcPort}
    kdc_tcp_listen = 127.0.0.1:${kdcPort}

[realms]
    ${realm} = {
        database_name = ${join(dir, 'principal')}
        key_stash_file = ${join(dir, 'stash')}
        acl_file = ${join(dir, 'kadm5.acl')}
        kdc_listen = 127.0.0.1:${kdcPort}
        kdc_tcp_listen = 127.0.0.1:${kdcPort}
        max_life = 1h
    }

[logging]
    kdc = STDERR
    admin_server = FILE:${join(dir, 'kadmin.log')}
    default = FILE:${join(dir, 'kadmin.log')}
`;
  await writeFile(settings.krb5ConfPath, krb5Conf);
  await writeFile(settings.kdcConfPath, kdcConf);
}

/**
 * Creates the realm's database and every principal the tests use, each with its own keytab.
 * @param {RealmSettings} settings
 */
async function createDatabase(settings) {
  const masterPassword = randomBytes(24).toString('base64url');
  await writeFile(join(settings.dir, 'kadm5.acl'), '');
  await runTool(settings, 'kdb5_util', ['create', '-s', '-r', settings.realm, '-P', masterPassword]);
  const principals = [
    [settings.principal, settings.serviceKeytab],
    [settings.otherServicePrincipal, settings.otherServiceKeytab],
    [settings.clientPrincipal, settings.clientKeytab],
    [settings.otherPrincipal, settings.otherKeytab],
  ];
  for (const [principal, keytab] of principals) {
    await kadminLocal(settings, `addprinc -randkey ${principal}`, `Principal "${principal}" created.`);
    await kadminLocal(settings, `ktadd -k ${keytab} ${principal}`, `Entry for principal ${principal} `);
  }
}

/**
 * Runs one kadmin.local query. kadmin.local exits with status 0 even when the query fails, so
 * success is recognised by what it prints.
 * @param {RealmSettings} settings
 * @param {string} query
 * @param {string} expectedOutput
 */
async function kadminLocal(settings, query, expectedOutput) {
  const { stdout, stderr } = await runTool(settings, 'kadmin.local', ['-r', settings.realm, '-q', query]);
  if (!stdout.includes(expectedOutput)) {
    throw new Error(`kadmin.local -q "${query}" failed:\n${`${stderr}${stdout}`.trim()}`);
  }
}

/**
 * Writes remctl.conf from its template, with its own copy of the test command: remctl.conf
 * fields are separated by spaces, which a checkout's path may contain, and a copy cannot lose
 * its execute permission.
 * @param {RealmSettings} settings
 */
async function writeRemctlConfiguration(settings) {
  const testCommand = join(settings.dir, 'test-command');
  await copyFile(join(REALM_FILES, 'test-command'), testCommand);
  await chmod(testCommand, 0o755);
  const template = await readFile(join(REALM_FILES, 'remctl.conf.in'), 'utf8');
  const conf = template.replaceAll('{{TEST_COMMAND}}', testCommand).replaceAll('{{REALM}}', settings.realm);
  await writeFile(settings.confPath, conf);
}

/**
 * Starts a detached process that cleans up after this process if it dies without stopping the
 * realm (SIGKILL, a crash, a test runner killed by its CI job).
 * @param {string} dir
 * @returns {number} the watchdog's pid
 */
function startWatchdog(dir) {
  const script = `import { guardRealm } from ${JSON.stringify(REALM_CONTROL)};
await guardRealm(${process.pid}, ${JSON.stringify(dir)});`;
  const watchdog = spawn(process.execPath, ['--input-type=module', '--eval', script], {
    detached: true,
    stdio: 'ignore',
  });
  watchdog.unref();
  return /** @type {number} */ (watchdog.pid);
}

async function main() {
  const realm = await startRealm();
  process.stdout.write(`${JSON.stringify(realm.settings, null, 2)}\n`);
  process.stderr.write(`Realm ${realm.realm} is running in ${realm.dir}; stop it with Ctrl-C.\n`);
  // Signal listeners alone do not keep Node running, and the daemons are unref'd.
  const keepAlive = setInterval(() => {}, 60_000);
  await new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  clearInterval(keepAlive);
  await realm.stop();
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
