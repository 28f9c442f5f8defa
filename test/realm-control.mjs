// Starting and stopping the test realm's daemons.
//
// Every function here takes the realm's plain settings (the JSON that startRealm() in realm.mjs
// produces and global-setup.mjs hands to the tests), never the Realm object, so that a test
// worker can restart the remctld that the main vitest process started. A daemon is known only by
// its pid file under <dir>/pids/: that is how Realm.stop(), the exit hook and the watchdog find
// daemons whichever process started them.

import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, readdir, readlink, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const READY_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 2_000;
const POLL_INTERVAL_MS = 50;
const PORT_ATTEMPTS = 4;
const LOG_TAIL_LINES = 20;

/**
 * The settings of a running realm, as plain JSON.
 * @typedef {object} RealmSettings
 * @property {string} dir
 * @property {string} realm
 * @property {string} host
 * @property {number} port
 * @property {number} kdcPort
 * @property {string} principal
 * @property {string} serviceKeytab
 * @property {string} otherServicePrincipal
 * @property {string} otherServiceKeytab
 * @property {string} clientPrincipal
 * @property {string} clientKeytab
 * @property {string} otherPrincipal
 * @property {string} otherKeytab
 * @property {string} ccache
 * @property {string} ccachePath
 * @property {string} otherCcache
 * @property {string} otherCcachePath
 * @property {string} confPath
 * @property {string} krb5ConfPath
 * @property {string} kdcConfPath
 * @property {{ KRB5_CONFIG: string, KRB5_KDC_PROFILE: string, KRB5CCNAME: string }} env
 * @property {string} kdcPidFile
 * @property {string} kdcLog
 * @property {string[]} kdcArgs
 * @property {string} remctldPidFile
 * @property {string} remctldLog
 * @property {string[]} remctldArgs
 */

/**
 * A remctld started by startExtraRemctld().
 * @typedef {object} ExtraRemctld
 * @property {number} port
 * @property {number} pid
 * @property {string} principal
 * @property {string} pidFile
 * @property {string} logFile
 * @property {() => Promise<void>} stop
 */

/** Thrown when a daemon could not listen on its port because another process holds it. */
export class PortTakenError extends Error {
  name = 'PortTakenError';
}

/** @param {string} dir */
export function pidDirectory(dir) {
  return join(dir, 'pids');
}

/** @param {RealmSettings} settings */
export async function startKdc(settings) {
  return startDaemon(settings, {
    name: 'krb5kdc',
    command: 'krb5kdc',
    args: settings.kdcArgs,
    pidFile: settings.kdcPidFile,
    logFile: settings.kdcLog,
    port: settings.kdcPort,
  });
}

/** @param {RealmSettings} settings */
export async function stopKdc(settings) {
  await stopDaemon(settings.dir, settings.kdcPidFile);
}

/** @param {RealmSettings} settings */
export async function startRemctld(settings) {
  return startDaemon(settings, {
    name: 'remctld',
    command: 'remctld',
    args: settings.remctldArgs,
    pidFile: settings.remctldPidFile,
    logFile: settings.remctldLog,
    port: settings.port,
  });
}

/** @param {RealmSettings} settings */
export async function stopRemctld(settings) {
  await stopDaemon(settings.dir, settings.remctldPidFile);
}

/**
 * Stops remctld and starts it again on the same port, for tests of reconnection.
 * @param {RealmSettings} settings
 * @returns {Promise<number>} the new remctld's pid
 */
export async function restartRemctld(settings) {
  await stopRemctld(settings);
  return startRemctld(settings);
}

/**
 * The remctld command line every remctld of a realm runs with: in the foreground, logging to
 * its standard output and error, and listening on loopback only.
 * @param {{ port: number, principal: string, keytab: string, confPath: string, pidFile: string }} daemon
 */
export function remctldArgs({ port, principal, keytab, confPath, pidFile }) {
  return [
    '-F', '-m', '-S',
    '-b', '127.0.0.1',
    '-p', String(port),
    '-s', principal,
    '-k', keytab,
    '-f', confPath,
    '-P', pidFile,
  ];
}

/**
 * Starts one more remctld on a free port with another service identity, for example to check
 * that a client refuses a server that is not the principal it asked for. Realm.stop() stops it
 * too.
 * @param {RealmSettings} settings
 * @param {{ principal: string, keytab: string, conf?: string, extraArgs?: string[] }} identity
 *   extraArgs: more remctld options, such as -d to log every connection it accepts
 * @returns {Promise<ExtraRemctld>}
 */
export async function startExtraRemctld(settings, { principal, keytab, conf = settings.confPath, extraArgs = [] }) {
  let pidFile = '';
  let logFile = '';
  const { port, pid } = await onFreePort(async (port) => {
    pidFile = join(pidDirectory(settings.dir), `remctld-${port}.pid`);
    logFile = join(settings.dir, `remctld-${port}.log`);
    return startDaemon(settings, {
      name: `remctld for ${principal}`,
      command: 'remctld',
      args: [...remctldArgs({ port, principal, keytab, confPath: conf, pidFile }), ...extraArgs],
      pidFile,
      logFile,
      port,
    });
  });
  return { port, pid, principal, pidFile, logFile, stop: () => stopDaemon(settings.dir, pidFile) };
}

/**
 * Ends every connection a remctld serves, as a server closing them would: kills the processes
 * that serve them (its children, one per connection) and waits until they are gone, their
 * sockets closed with them.
 * @param {{ pidFile: string }} daemon
 */
export async function dropConnections(daemon) {
  const pid = readPid(daemon.pidFile);
  if (pid === undefined) throw new Error(`no remctld is running for ${daemon.pidFile}`);
  const handlers = childrenOf(pid);
  for (const handler of handlers) process.kill(handler, 'SIGKILL');
  while (handlers.some(processIsAlive)) await sleep(POLL_INTERVAL_MS);
}

/**
 * The pids of a process's children; none once it is gone.
 * @param {number} pid
 * @returns {number[]}
 */
export function childrenOf(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * Gets a ticket from the realm's KDC with a keytab. Pass extraArgs such as ['-l', '5s'] for a
 * ticket that expires during a test.
 * @param {RealmSettings} settings
 * @param {string} principal
 * @param {string} keytab
 * @param {string} ccache a path, or a ccache name such as FILE:/path
 * @param {string[]} [extraArgs]
 */
export async function kinit(settings, principal, keytab, ccache, extraArgs = []) {
  const ccacheName = /^[A-Za-z]+:/.test(ccache) ? ccache : `FILE:${ccache}`;
  await runTool(settings, 'kinit', ['-k', '-t', keytab, '-c', ccacheName, ...extraArgs, principal]);
}

/**
 * Runs a Kerberos tool against the realm. Its output is kept quiet and shown only in the error
 * when it fails.
 * @param {RealmSettings} settings
 * @param {string} command
 * @param {string[]} args
 * @returns {Promise<{ stdout: string, stderr: string }>}
 */
export function runTool(settings, command, args) {
  return new Promise((resolve, reject) => {
    execFile(command, args, { env: realmEnvironment(settings) }, (error, stdout, stderr) => {
      if (error) {
        const output = `${stderr}${stdout}`.trim() || error.message;
        reject(new Error(`${command} ${args.join(' ')} failed:\n${output}`));
      } else {
        resolve({ stdout, stderr });
      }
    });
  });
}

/**
 * The environment for the realm's daemons and tools.
 * @param {RealmSettings} settings
 */
export function realmEnvironment(settings) {
  return {
    ...process.env,
    ...settings.env,
    // Otherwise remctld keeps its replay cache in /var/tmp, shared by every realm on the machine.
    KRB5RCACHEDIR: settings.dir,
    // krb5kdc, kadmin.local and remctld live in sbin, which a non-root PATH often lacks.
    PATH: [process.env.PATH, '/usr/local/sbin', '/usr/sbin', '/sbin'].filter(Boolean).join(':'),
  };
}

/**
 * Runs start(port) on a free port, and again on another one if the port was taken: a port found
 * free by binding it can be taken by another process before the daemon binds it.
 * @param {(port: number) => Promise<number>} start returns the pid of the started daemon
 * @param {number} [firstPort] a free port to try first
 * @returns {Promise<{ port: number, pid: number }>}
 */
export async function onFreePort(start, firstPort) {
  let port = firstPort ?? (await freePort());
  for (let attempt = 1; ; attempt++) {
    try {
      return { port, pid: await start(port) };
    } catch (error) {
      if (!(error instanceof PortTakenError) || attempt === PORT_ATTEMPTS) throw error;
      port = await freePort();
    }
  }
}

/** @returns {Promise<number>} a loopback TCP port that nothing listened on a moment ago */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/**
 * @typedef {object} Daemon
 * @property {string} name
 * @property {string} command
 * @property {string[]} args
 * @property {string} pidFile
 * @property {string} logFile
 * @property {number} port
 */

/**
 * Starts a daemon in its own process group, so that stopping it also stops the connection
 * handlers and commands it forked, and waits until it listens on its port.
 * @param {RealmSettings} settings
 * @param {Daemon} daemon
 * @returns {Promise<number>} the daemon's pid
 */
async function startDaemon(settings, daemon) {
  await mkdir(pidDirectory(settings.dir), { recursive: true });
  const log = openSync(daemon.logFile, 'a');
  let child;
  try {
    child = spawn(daemon.command, daemon.args, {
      env: realmEnvironment(settings),
      stdio: ['ignore', log, log],
      detached: true,
    });
  } finally {
    closeSync(log);
  }
  /** @type {string | undefined} */
  let exit;
  child.once('error', (error) => (exit = `could not be run: ${error.message}`));
  child.once('exit', (code, signal) => (exit = signal ? `was killed by ${signal}` : `exited with status ${code}`));
  // Neither this process's event loop nor a test worker's lifetime should be tied to the daemon.
  child.unref();
  const pid = child.pid;
  if (pid === undefined) {
    // spawn() reports a command it could not run in an 'error' event on a later tick.
    await sleep(0);
    throw new Error(`${daemon.name} ${exit ?? 'could not be started'}`);
  }
  // Written before waiting, so that a test process dying right now still leaves a trace of it.
  writeFileSync(daemon.pidFile, `${pid}\n`);

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (exit !== undefined) {
      await rm(daemon.pidFile, { force: true });
      const tail = await logTail(daemon.logFile);
      const message = `${daemon.name} ${exit} before listening on 127.0.0.1:${daemon.port}.\n${tail}`;
      throw /Address already in use/.test(tail) ? new PortTakenError(message) : new Error(message);
    }
    const listening = await listenerState(daemon.port, pid);
    if (listening === 'ours') return pid;
    if (listening === 'shared' || Date.now() > deadline) {
      await stopDaemon(settings.dir, daemon.pidFile);
      const tail = await logTail(daemon.logFile);
      if (listening === 'shared') {
        throw new PortTakenError(`${daemon.name} shares 127.0.0.1:${daemon.port} with another process.\n${tail}`);
      }
      throw new Error(`${daemon.name} did not listen on 127.0.0.1:${daemon.port} within ${READY_TIMEOUT_MS} ms.\n${tail}`);
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

/**
 * Whether the daemon is the one listening on the port. Accepting a connection is not proof:
 * the connection may reach another process that took the port, and krb5kdc binds its ports
 * with SO_REUSEPORT, so a second KDC on the same port starts without complaint and shares it.
 * Where /proc is missing, a connection is the best evidence there is.
 * @param {number} port
 * @param {number} pid
 * @returns {Promise<'ours' | 'shared' | 'not yet'>}
 */
async function listenerState(port, pid) {
  if (!existsSync('/proc/net/tcp')) return (await acceptsConnections(port)) ? 'ours' : 'not yet';
  const listeners = await listeningSocketInodes(port);
  const ours = await socketInodesOf(pid);
  const mine = listeners.filter((inode) => ours.has(inode));
  if (mine.length === 0) return 'not yet';
  return mine.length === listeners.length ? 'ours' : 'shared';
}

/** @param {number} port */
async function listeningSocketInodes(port) {
  const portSuffix = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const TCP_LISTEN = '0A';
  /** @type {string[]} */
  const inodes = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      const fields = line.trim().split(/\s+/);
      if (fields[1]?.endsWith(portSuffix) && fields[3] === TCP_LISTEN) inodes.push(fields[9]);
    }
  }
  return inodes;
}

/** @param {number} pid */
async function socketInodesOf(pid) {
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => []);
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
  return new Set(targets.map((target) => /^socket:\[(\d+)\]$/.exec(target)?.[1]).filter(Boolean));
}

/** @param {number} port */
function acceptsConnections(port) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Stops the daemon named by a pid file: SIGTERM to its process group, SIGKILL if it is still
 * there after a grace period. A missing pid file means there is nothing to stop.
 * @param {string} dir the realm directory
 * @param {string} pidFile
 */
export async function stopDaemon(dir, pidFile) {
  const pid = readPid(pidFile);
  if (pid !== undefined && daemonState(pid, dir) !== 'foreign') {
    signalGroup(pid, 'SIGTERM');
    if (!(await waitUntilGone(pid, dir, STOP_GRACE_MS))) {
      signalGroup(pid, 'SIGKILL');
      await waitUntilGone(pid, dir, STOP_GRACE_MS);
    }
    // Connection handlers and the commands they run can outlive the daemon they came from.
    signalGroup(pid, 'SIGKILL');
  }
  await rm(pidFile, { force: true });
}

/**
 * Stops every daemon of the realm, including those that test workers started.
 * @param {string} dir
 */
export async function stopAllDaemons(dir) {
  await Promise.all(pidFiles(dir).map((pidFile) => stopDaemon(dir, pidFile)));
}

/**
 * Kills every daemon of the realm at once, for the moments when there is no time to wait: the
 * test process exiting, or the watchdog finding the test process gone.
 * @param {string} dir
 */
export function killAllDaemonsSync(dir) {
  for (const pidFile of pidFiles(dir)) {
    const pid = readPid(pidFile);
    if (pid !== undefined && daemonState(pid, dir) !== 'foreign') signalGroup(pid, 'SIGKILL');
  }
}

/**
 * The watchdog's body, run in a detached process: once the process that started the realm is
 * gone without stopping it, kill the realm's daemons and remove its directory.
 * @param {number} parentPid
 * @param {string} dir
 */
export async function guardRealm(parentPid, dir) {
  while (processIsAlive(parentPid)) await sleep(1000);
  killAllDaemonsSync(dir);
  await rm(dir, { recursive: true, force: true });
}

/** @param {string} dir */
function pidFiles(dir) {
  try {
    return readdirSync(pidDirectory(dir))
      .filter((name) => name.endsWith('.pid'))
      .map((name) => join(pidDirectory(dir), name));
  } catch {
    return [];
  }
}

/**
 * @param {string} pidFile
 * @returns {number | undefined}
 */
export function readPid(pidFile) {
  try {
    const pid = Number.parseInt(readFileSync(pidFile, 'utf8'), 10);
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether a pid from a pid file is still a daemon of this realm. A daemon that died without
 * removing its pid file leaves a pid that may belong to an unrelated process by now; every
 * daemon of a realm has the realm directory in its command line.
 * @param {number} pid
 * @param {string} dir
 * @returns {'running' | 'gone' | 'foreign'}
 */
function daemonState(pid, dir) {
  if (!processIsAlive(pid)) return 'gone';
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir) ? 'running' : 'foreign';
  } catch {
    return existsSync('/proc/self') ? 'gone' : 'running';
  }
}

/**
 * Whether a process exists and has not yet exited. A zombie counts as gone: nobody may reap a
 * daemon whose starting test worker has exited, since init in a container often does not.
 * @param {number} pid
 */
export function processIsAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return /** @type {NodeJS.ErrnoException} */ (error).code === 'EPERM';
  }
  try {
    // The state follows the parenthesised command name, which may itself contain spaces.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

/**
 * @param {number} pid
 * @param {string} dir
 * @param {number} timeoutMs
 */
async function waitUntilGone(pid, dir, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (daemonState(pid, dir) === 'running') {
    if (Date.now() > deadline) return false;
    await sleep(POLL_INTERVAL_MS);
  }
  return true;
}

/**
 * @param {number} pid the daemon's pid, which is also its process group's id
 * @param {NodeJS.Signals} signal
 */
function signalGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    // The whole group is gone already.
  }
}

/** @param {string} logFile */
export async function logTail(logFile) {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  const lines = text.trimEnd().split('\n').slice(-LOG_TAIL_LINES);
  return `Last lines of ${logFile}:\n${lines.join('\n')}`;
}
