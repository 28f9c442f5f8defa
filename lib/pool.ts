import { callSignal } from './abort.js';
import { setMaxListeners } from 'node:events';
import { credentialsExpire, opensOf, Remctl, runOn, spawnParts } from './connection.js';
import { RemctlError, RemctlProtocolError } from './errors.js';
import type { RemctlResult } from './output.js';
import { RemctlProcess } from './process.js';
import { checkSettings, connectTimeoutOf, SETTING_NAMES, type ConnectionSettings } from './settings.js';
import {
  checkCallTimeout,
  checkCommand,
  checkEncoding,
  checkMaxBuffer,
  checkMilliseconds,
  checkOptionalText,
  checkPort,
  checkSignal,
  checkSourceIp,
  checkText,
  readOptions,
  type Argument,
  type Command,
  type Encoding,
} from './validate.js';

export interface RemctlPoolOptions extends ConnectionSettings {
  /** Connections open at most per target (host, port, principal, ticket cache, source address). Default 4. */
  connections?: number;
  /** Milliseconds an idle connection is kept before it is closed. Default 30 000; 0 closes it as soon as it is idle. */
  keepAliveTimeout?: number;
  /** Milliseconds between the noop()s an idle connection sends (for firewalls that drop quiet sessions). Default 0: none. */
  noopInterval?: number;
}

/** What a pooled call takes: where to run, and the call's own options. */
export interface RemctlPoolCallOptions {
  port?: number;
  principal?: string;
  /** The ticket cache to authenticate from; a connection is only ever shared by calls with the same one. */
  ccache?: string;
  sourceIp?: string;
  signal?: AbortSignal;
  /** Milliseconds the whole call may take, the wait for a connection included. */
  timeout?: number;
}

export interface RemctlPoolRunOptions extends RemctlPoolCallOptions {
  encoding?: 'buffer' | BufferEncoding;
  maxBuffer?: number;
}

export interface RemctlPoolStats {
  /** Connections open now, idle or busy, in all targets. */
  connections: number;
  idle: number;
  busy: number;
  /** Calls waiting for a connection. */
  queued: number;
  /** Connections the pool has opened, in all. */
  opened: number;
  /** Calls that ran on a connection an earlier call had used, in all. */
  reused: number;
}

const POOL_OPTIONS = [...SETTING_NAMES, 'connections', 'keepAliveTimeout', 'noopInterval'] as const;
const CALL_OPTIONS = ['port', 'principal', 'ccache', 'sourceIp', 'signal', 'timeout'] as const;
const RUN_OPTIONS = [...CALL_OPTIONS, 'encoding', 'maxBuffer'] as const;

// Failures of an open that are the target's, not the call's: the server
// cannot be reached, refuses the credentials, or does not answer.
const TARGET_FAILURES = new Set<unknown>(['ERR_REMCTL_CONNECT', 'ERR_REMCTL_AUTH', 'ERR_REMCTL_TIMEOUT']);

const DEFAULT_CONNECTIONS = 4;
const DEFAULT_KEEP_ALIVE_TIMEOUT = 30_000;

interface Pooled {
  remctl: Remctl;
  // A call has run on it.
  used: boolean;
  // Armed while it is idle, and left armed when a call takes it: the timer
  // looks at the connection when it fires, so that a busy service's calls
  // arm no timer each (see #wake).
  timer: NodeJS.Timeout | undefined;
  // When it last went idle (keepAliveTimeout counts from there; a noop does
  // not make it any younger), and when its last call or noop ended.
  idleSince: number;
  quietSince: number;
  // Its opens as of its last release: a server that had closed it is found
  // out by the next call, which the native side sends on a fresh connection.
  opens: number;
}

interface Waiter {
  // Hands it a connection; false if the call gave up waiting meanwhile (the
  // connection is then the caller's to release).
  resolve(pooled: Pooled): boolean;
  reject(error: unknown): void;
  signal: AbortSignal | undefined;
}

// The connections of one target, and the calls waiting for one of them.
interface Target {
  key: string;
  host: string;
  open: { port: number; principal: string | undefined };
  settings: ConnectionSettings;
  // Most recently used last.
  idle: Pooled[];
  busy: Set<Pooled>;
  opening: number;
  queue: Waiter[];
}

// A call's validated arguments, and the key of the target it runs on.
interface Call {
  key: string;
  host: string;
  port: number;
  principal: string | undefined;
  ccache: string | undefined;
  sourceIp: string | undefined;
  args: Argument[];
  signal: AbortSignal;
  // The caller gave a signal of its own.
  own: boolean;
  timeout: number;
  values: Record<string, unknown>;
}

function poolClosed(): RemctlError {
  return new RemctlError('the pool is closed', 'ERR_REMCTL_POOL_CLOSED');
}

/**
 * Authenticated connections kept for reuse, per target: a call takes an
 * idle one (the most recently used first), opens one while fewer than
 * `connections` are open, or waits its turn in a FIFO queue.
 *
 * @example
 * const pool = new RemctlPool({ connections: 4, keepAliveTimeout: 30_000 });
 * const { stdout } = await pool.run('kdc.example.com', ['kadmin', 'examine', 'alice'], { encoding: 'utf8' });
 * await pool.close();
 */
export class RemctlPool {
  #settings: ConnectionSettings;
  #connections: number;
  #keepAliveTimeout: number;
  #noopInterval: number;
  // Only targets with a connection or a call: one left with neither goes.
  #targets = new Map<string, Target>();
  // Targets whose server answered a noop with something else (too old for
  // NOOP): kept when the target itself goes, so that no later connection
  // to it is retired for a noop it cannot answer.
  #noNoops = new Set<string>();
  #opened = 0;
  #reused = 0;
  #closed = false;
  // Every call's signal follows this one, which destroy() aborts.
  #destroyed = new AbortController();
  // Resolved once close() or destroy() has nothing left in flight.
  #drained: Array<() => void> = [];

  constructor(options?: RemctlPoolOptions) {
    const values = readOptions(options, POOL_OPTIONS);
    const { connections, keepAliveTimeout, noopInterval, ...settings } = values;
    this.#settings = checkSettings(settings);
    this.#connections = connections === undefined ? DEFAULT_CONNECTIONS : checkConnections(connections);
    this.#keepAliveTimeout = keepAliveTimeout === undefined ? DEFAULT_KEEP_ALIVE_TIMEOUT : checkMilliseconds(keepAliveTimeout, 'keepAliveTimeout');
    this.#noopInterval = noopInterval === undefined ? 0 : checkMilliseconds(noopInterval, 'noopInterval');
    // Every call and every waiting one listens to it, by design.
    setMaxListeners(0, this.#destroyed.signal);
  }

  get stats(): RemctlPoolStats {
    let idle = 0;
    let busy = 0;
    let queued = 0;
    for (const target of this.#targets.values()) {
      idle += target.idle.length;
      busy += target.busy.size;
      queued += target.queue.length;
    }
    return { connections: idle + busy, idle, busy, queued, opened: this.#opened, reused: this.#reused };
  }

  /** Runs a command on a pooled connection and collects its output, as remctl() does. */
  async run(host: string, command: Command, options?: RemctlPoolRunOptions & { encoding?: 'buffer' }): Promise<RemctlResult<Buffer>>;
  async run(host: string, command: Command, options: RemctlPoolRunOptions & { encoding: BufferEncoding }): Promise<RemctlResult<string>>;
  async run(host: string, command: Command, options?: RemctlPoolRunOptions): Promise<RemctlResult<string | Buffer>>;
  async run(host: string, command: Command, options?: RemctlPoolRunOptions): Promise<RemctlResult<string | Buffer>> {
    const call = this.#call(host, command, options, RUN_OPTIONS);
    const encoding: Encoding = checkEncoding(call.values.encoding);
    const maxBuffer = call.values.maxBuffer === undefined ? undefined : checkMaxBuffer(call.values.maxBuffer);
    const deadline = callSignal(call.signal, call.timeout);
    const target = this.#target(call);
    try {
      const pooled = await this.#acquire(target, deadline.signal);
      let healthy = false;
      try {
        this.#using(pooled);
        // Only the caller's own signal can abort the call in the turn that
        // made it: the pool's and the deadline's cannot.
        const result = await runOn(pooled.remctl, call.args, deadline.signal!, call.own, encoding, maxBuffer);
        healthy = true;
        return result;
      } catch (error) {
        // The server's own refusal leaves the connection in step; anything
        // else (a lost connection, a timeout, an abort, maxBuffer) retires it.
        healthy = error instanceof RemctlProtocolError;
        throw error;
      } finally {
        this.#release(target, pooled, healthy);
      }
    } finally {
      deadline.done();
    }
  }

  /** Runs a command on a pooled connection and streams its output (see RemctlProcess). */
  spawn(host: string, command: Command, options?: RemctlPoolCallOptions): RemctlProcess {
    const call = this.#call(host, command, options, CALL_OPTIONS);
    const deadline = callSignal(call.signal, call.timeout);
    let target: Target | undefined;
    let pooled: Pooled | undefined;
    let parts: ReturnType<typeof spawnParts> | undefined;
    let ended = false;
    const start = async (aborted: AbortSignal) => {
      target = this.#target(call);
      const taken = await this.#acquire(target, aborted);
      // Aborted just as the connection came: the process has ended already.
      if (ended) {
        this.#release(target, taken, true);
        throw aborted.reason;
      }
      pooled = taken;
      this.#using(pooled);
      parts = spawnParts(pooled.remctl, call.args);
      parts.bind(child);
      return parts.start(aborted);
    };
    const child = new RemctlProcess(
      {
        outputBatch: (maxBytes) => parts!.source.outputBatch(maxBytes),
        cancel: () => parts?.source.cancel(),
      },
      [start],
      deadline.signal,
      () => parts?.lost(),
      (ok) => {
        ended = true;
        deadline.done();
        parts?.end();
        // Only a command that ended with its status leaves the connection in step.
        if (pooled !== undefined) this.#release(target!, pooled, ok);
      },
    );
    return child;
  }

  /** Waits for the calls in flight (and queued), then closes every connection; later calls reject with ERR_REMCTL_POOL_CLOSED. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const target of this.#targets.values()) this.#closeIdle(target);
    await this.#whenDrained();
  }

  /** Aborts the calls in flight and queued (they reject with ERR_REMCTL_POOL_CLOSED) and closes every connection. */
  async destroy(): Promise<void> {
    this.#closed = true;
    const error = poolClosed();
    for (const target of this.#targets.values()) {
      for (const waiter of target.queue.splice(0)) waiter.reject(error);
      this.#closeIdle(target);
    }
    // The calls under way reject with it, and their connections close.
    this.#destroyed.abort(error);
    await this.#whenDrained();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #call(host: unknown, command: unknown, options: unknown, allowed: readonly string[]): Call {
    const checkedHost = checkText(host, 'host');
    const args = checkCommand(command);
    const values = readOptions(options, allowed);
    const own = checkSignal(values.signal);
    own?.throwIfAborted();
    const signal = own === undefined ? this.#destroyed.signal : AbortSignal.any([own, this.#destroyed.signal]);
    const timeout = checkCallTimeout(values.timeout);
    const port = checkPort(values.port);
    const principal = checkOptionalText(values.principal, 'principal');
    const ccache = values.ccache === undefined ? this.#settings.ccache : checkText(values.ccache, 'ccache');
    const sourceIp = values.sourceIp === undefined ? this.#settings.sourceIp : checkSourceIp(values.sourceIp);
    // None of the texts is empty or holds a NUL: the key is unambiguous.
    const key = `${checkedHost}\0${port}\0${principal ?? ''}\0${ccache ?? ''}\0${sourceIp ?? ''}`;
    return { key, host: checkedHost, port, principal, ccache, sourceIp, args, signal, own: own !== undefined, timeout, values };
  }

  // The call's target, made if it has none: only once the call is about to
  // take a connection, so that a call refused for its options leaves none.
  #target(call: Call): Target {
    let target = this.#targets.get(call.key);
    if (target === undefined) {
      const settings: ConnectionSettings = { ...this.#settings };
      if (call.ccache !== undefined) settings.ccache = call.ccache;
      if (call.sourceIp !== undefined) settings.sourceIp = call.sourceIp;
      target = { key: call.key, host: call.host, open: { port: call.port, principal: call.principal }, settings, idle: [], busy: new Set(), opening: 0, queue: [] };
      this.#targets.set(call.key, target);
    }
    return target;
  }

  #using(pooled: Pooled): void {
    if (pooled.used) this.#reused++;
    pooled.used = true;
  }

  async #acquire(target: Target, signal: AbortSignal | undefined): Promise<Pooled> {
    if (signal?.aborted || this.#closed) {
      this.#settled(target);
      signal?.throwIfAborted();
      throw poolClosed();
    }
    for (let idle = target.idle.pop(); idle !== undefined; idle = target.idle.pop()) {
      // The server would go on taking commands from it, but the ticket it
      // authenticated with has run out: it is retired, not used.
      if (Date.now() >= credentialsExpire(idle.remctl)) {
        clearTimeout(idle.timer);
        void idle.remctl.close().catch(() => {});
        continue;
      }
      target.busy.add(idle);
      return idle;
    }
    if (this.#open(target) < this.#connections) return this.#connect(target, signal);
    return new Promise<Pooled>((resolve, reject) => {
      let settled = false;
      const waiter: Waiter = {
        resolve: (pooled) => {
          if (settled) return false;
          settled = true;
          signal?.removeEventListener('abort', abandon);
          resolve(pooled);
          return true;
        },
        reject: (error) => {
          if (settled) return;
          settled = true;
          signal?.removeEventListener('abort', abandon);
          reject(error);
        },
        signal,
      };
      // An aborted call leaves the queue at once.
      const abandon = () => {
        const at = target.queue.indexOf(waiter);
        if (at >= 0) target.queue.splice(at, 1);
        waiter.reject(signal!.reason);
        this.#settled(target);
      };
      signal?.addEventListener('abort', abandon, { once: true });
      target.queue.push(waiter);
    });
  }

  #open(target: Target): number {
    return target.idle.length + target.busy.size + target.opening;
  }

  async #connect(target: Target, signal: AbortSignal | undefined): Promise<Pooled> {
    target.opening++;
    try {
      const remctl = await Remctl.connect(target.host, {
        ...target.settings,
        port: target.open.port,
        ...(target.open.principal === undefined ? {} : { principal: target.open.principal }),
        ...(signal === undefined ? {} : { signal }),
      });
      this.#opened++;
      const pooled: Pooled = { remctl, used: false, timer: undefined, idleSince: 0, quietSince: 0, opens: opensOf(remctl) };
      target.busy.add(pooled);
      return pooled;
    } catch (error) {
      // Not this call's own abort or timeout, but the target's: the calls
      // waiting for it would only wait as long to fail the same way.
      if (!signal?.aborted && TARGET_FAILURES.has((error as RemctlError).code)) {
        for (const waiter of target.queue.splice(0)) waiter.reject(error);
      }
      throw error;
    } finally {
      target.opening--;
      // A failed open leaves room for a waiting call to try its own.
      this.#dispatch(target);
      this.#settled(target);
    }
  }

  // The call on pooled has ended: the connection goes to the first waiting
  // call, back to the idle ones, or (retired, or the pool closing) away.
  // idleSince: when it last went idle, for keepAliveTimeout; a noop does not
  // make it any younger.
  #release(target: Target, pooled: Pooled, healthy: boolean, idleSince?: number): void {
    const now = Date.now();
    target.busy.delete(pooled);
    const opens = opensOf(pooled.remctl);
    this.#opened += Math.max(opens - pooled.opens, 0);
    pooled.opens = opens;
    // Credentials that have run out retire it too: the server would go on
    // taking commands from it.
    const usable = healthy && pooled.remctl.opened && now < credentialsExpire(pooled.remctl);
    if (!usable || (this.#closed && target.queue.length === 0)) {
      this.#retire(target, pooled);
      return;
    }
    for (let waiter = target.queue.shift(); waiter !== undefined; waiter = target.queue.shift()) {
      target.busy.add(pooled);
      if (waiter.resolve(pooled)) return;
      target.busy.delete(pooled);
    }
    target.idle.push(pooled);
    this.#idle(target, pooled, idleSince ?? now, now);
    this.#settled(target);
  }

  // Opens connections for waiting calls while there is room for them.
  #dispatch(target: Target): void {
    while (target.queue.length > 0 && this.#open(target) < this.#connections) {
      const waiter = target.queue.shift()!;
      if (this.#destroyed.signal.aborted) {
        waiter.reject(poolClosed());
        continue;
      }
      this.#connect(target, waiter.signal).then(
        (pooled) => {
          // Gave up while it was opening: the connection is of use to the next call.
          if (!waiter.resolve(pooled)) this.#release(target, pooled, true);
        },
        (error: unknown) => waiter.reject(error),
      );
    }
  }

  // An idle connection is closed keepAliveTimeout after idleSince, and sends
  // a noop every noopInterval until then. Its timer may still be armed from
  // an earlier time it was idle: it then looks when it fires.
  #idle(target: Target, pooled: Pooled, idleSince: number, now: number): void {
    pooled.idleSince = idleSince;
    pooled.quietSince = now;
    if (pooled.timer === undefined) this.#wake(target, pooled, now);
  }

  // What is due for an idle connection: a noop, its close, or (not yet) a
  // timer for whichever comes first. Timers never keep the process alive.
  #wake(target: Target, pooled: Pooled, now = Date.now()): void {
    pooled.timer = undefined;
    const at = target.idle.indexOf(pooled);
    // Taken by a call: its release arms the timer again.
    if (at < 0) return;
    const left = this.#keepAliveTimeout - (now - pooled.idleSince);
    const noops = this.#noopInterval > 0 && !this.#noNoops.has(target.key) && left > this.#noopInterval;
    const due = noops ? this.#noopInterval - (now - pooled.quietSince) : left;
    if (due > 0) {
      pooled.timer = setTimeout(() => this.#wake(target, pooled), due).unref();
      return;
    }
    target.idle.splice(at, 1);
    if (noops) this.#keepAlive(target, pooled);
    else this.#retire(target, pooled);
  }

  // Sends a noop on a connection just taken out of the idle ones.
  #keepAlive(target: Target, pooled: Pooled): void {
    // Busy while it sends: no call takes it meanwhile. Bounded, and ended by
    // destroy(), as a call would be.
    target.busy.add(pooled);
    const idleSince = pooled.idleSince;
    const signal = AbortSignal.any([this.#destroyed.signal, AbortSignal.timeout(connectTimeoutOf(this.#settings))]);
    pooled.remctl.noop({ signal }).then(
      () => this.#release(target, pooled, true, idleSince),
      (error: unknown) => {
        // A server too old for NOOP: one of protocol version 1 refuses it
        // before anything is sent, and the connection is as it was; one of
        // version 2 answers with a message of its own, which libremctl does
        // not expect.
        const code = (error as RemctlError).code;
        const unsupported = code === 'ERR_REMCTL_UNSUPPORTED';
        if (unsupported || code === 'ERR_REMCTL_BAD_RESPONSE') this.#noNoops.add(target.key);
        this.#release(target, pooled, unsupported, idleSince);
      },
    );
  }

  #retire(target: Target, pooled: Pooled): void {
    clearTimeout(pooled.timer);
    void pooled.remctl.close().catch(() => {});
    this.#dispatch(target);
    this.#settled(target);
  }

  #closeIdle(target: Target): void {
    for (const pooled of target.idle.splice(0)) {
      clearTimeout(pooled.timer);
      void pooled.remctl.close().catch(() => {});
    }
  }

  #inFlight(): boolean {
    for (const target of this.#targets.values()) {
      if (target.busy.size > 0 || target.opening > 0 || target.queue.length > 0) return true;
    }
    return false;
  }

  #whenDrained(): Promise<void> {
    if (!this.#inFlight()) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }

  // Something of target's ended: a target left with no connection and no
  // call goes (a service calling many hosts keeps only those in use).
  #settled(target: Target): void {
    if (this.#open(target) === 0 && target.queue.length === 0 && this.#targets.get(target.key) === target) {
      this.#targets.delete(target.key);
    }
    this.#settleDrained();
  }

  #settleDrained(): void {
    if (!this.#closed || this.#inFlight()) return;
    for (const target of this.#targets.values()) this.#closeIdle(target);
    this.#targets.clear();
    for (const resolve of this.#drained.splice(0)) resolve();
  }
}

function checkConnections(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 10_000) {
    throw new RangeError(`connections must be a whole number from 1 to 10000, got ${typeof value === 'number' ? value : typeof value}`);
  }
  return value;
}
