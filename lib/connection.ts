import { abortable, callSignal, laterTurn, openDeadline } from './abort.js';
import { isFailure, type NativeFailure, type NativeHandle } from './addon.js';
import { RemctlError, RemctlNotOpenedError, RemctlOutputPendingError } from './errors.js';
import { failureError } from './failure.js';
import type { RemctlOutput, RemctlResult } from './output.js';
import { RemctlProcess } from './process.js';
import { DEFAULT_MAX_BUFFER, nativeLimit, settleRun } from './result.js';
import { checkSettings, connectTimeoutOf, newHandle, SETTING_NAMES, type ConnectionSettings } from './settings.js';
import {
  commandChannel,
  commandContext,
  nextConnectionId,
  openChannel,
  openContext,
  traceCommand,
  traceOpen,
  traceStatus,
  type RemctlCommandContext,
  type Target,
} from './tracing.js';
import {
  checkCommand,
  checkEncoding,
  checkMaxBuffer,
  checkOptionalText,
  checkPort,
  checkSignal,
  checkSourceIp,
  checkCallTimeout,
  checkMilliseconds,
  checkText,
  readOptions,
  type Argument,
  type Command,
  type Encoding,
} from './validate.js';

export interface OpenOptions {
  /** 0 or absent: 4373, falling back to 4444. */
  port?: number;
  /** The server's principal; absent: host/<host>. */
  principal?: string;
  signal?: AbortSignal;
}

export interface ConnectOptions extends ConnectionSettings, OpenOptions {}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface SpawnCallOptions extends CallOptions {
  /**
   * Milliseconds the whole call may take, waiting for its turn on the
   * connection included; then it rejects with ERR_REMCTL_TIMEOUT and the
   * connection is closed (the next call reopens it). 0 (the default) for none.
   */
  timeout?: number;
}

export interface RunOptions extends SpawnCallOptions {
  encoding?: 'buffer' | BufferEncoding;
  maxBuffer?: number;
}

const OPEN_OPTIONS = ['port', 'principal', 'signal'] as const;
const CALL_OPTIONS = ['signal'] as const;
const SPAWN_CALL_OPTIONS = ['signal', 'timeout'] as const;
const RUN_OPTIONS = ['signal', 'timeout', 'encoding', 'maxBuffer'] as const;

/**
 * A persistent connection: several commands over one authenticated
 * session. Calls run in the order they were made, driven by the event
 * loop. A connection the server closed between commands, or that an
 * aborted call closed, is reopened by the next call.
 *
 * @example
 * await using r = await Remctl.connect('kdc.example.com');
 * const { stdout } = await r.run(['kadmin', 'check', 'user'], { encoding: 'utf8' });
 */
export class Remctl implements AsyncDisposable {
  #settings: ConnectionSettings;
  // The native connection; undefined while closed, or once an aborted call
  // closed it (then the next call reopens it, to #target).
  #handle: NativeHandle | undefined;
  #target: Target | undefined;
  // What tracing says of #handle: its id, and whether a command went out on it.
  #connectionId = 0;
  #used = false;
  // The text of why the last open failed: its handle is gone already.
  #failure: string | undefined;
  // The successful opens of the native connections this object had before #handle.
  #pastOpens = 0;
  // A command sent with command() whose output has not been read to its end.
  #pending = false;
  // Tokens of that output that outputs() read ahead, the last maybe the
  // failure that ended the reading.
  #ahead: Array<RemctlOutput | NativeFailure> = [];
  // Calls take turns: a call spanning several native operations (spawn,
  // outputs) holds the connection until it is done. A call finding the
  // connection free takes it at once, without a promise to wait on.
  #busy = false;
  #waiting: Array<{ resume: () => void; resumed: boolean; abandoned: boolean }> = [];
  // close() was called; calls made before it still run.
  #closing = false;

  constructor(options?: ConnectionSettings) {
    this.#settings = checkSettings(readOptions(options, SETTING_NAMES));
    SPAWN_PARTS.set(this, (args) => this.#spawnParts(args, this.#take(undefined)));
    INTERNALS.set(this, {
      run: (args, signal, sendLater, encoding, maxBuffer = DEFAULT_MAX_BUFFER) => this.#runChecked(args, signal, sendLater, encoding, maxBuffer),
      credentialsExpire: () => {
        const expire = this.#handle?.credentialsExpire ?? -1;
        return expire < 0 ? Infinity : expire;
      },
      opens: () => this.#pastOpens + (this.#handle?.opens ?? 0),
    });
  }

  /** A new connection, opened. */
  static async connect(host: string, options?: ConnectOptions): Promise<Remctl> {
    const values = readOptions(options, [...SETTING_NAMES, ...OPEN_OPTIONS]);
    const { port, principal, signal, ...settings } = values;
    const connection = new Remctl(settings as ConnectionSettings);
    await connection.open(host, { port, principal, signal } as OpenOptions);
    return connection;
  }

  /** True between a successful open() and a call of close(). */
  get opened(): boolean {
    return this.#target !== undefined && !this.#closing;
  }

  /** Opens a connection, closing the one this object had. */
  async open(host: string, options?: OpenOptions): Promise<void> {
    const values = readOptions(options, OPEN_OPTIONS);
    const target = {
      host: checkText(host, 'host'),
      port: checkPort(values.port),
      principal: checkOptionalText(values.principal, 'principal'),
    };
    const signal = checkSignal(values.signal);
    signal?.throwIfAborted();
    await this.#inTurn(signal, async () => {
      this.#release();
      this.#target = undefined;
      this.#failure = undefined;
      this.#handle = await this.#connect(target, signal);
      this.#target = target;
    });
  }

  /** The ticket cache for the next opens (and transparent reopens). */
  setCcache(path: string): void {
    const ccache = checkText(path, 'path');
    this.#settings.ccache = ccache;
    this.#handle?.setCcache(ccache);
  }

  /** The local address for the next connections. */
  setSourceIp(ip: string): void {
    const sourceIp = checkSourceIp(ip, 'ip');
    this.#settings.sourceIp = sourceIp;
    this.#handle?.setSourceIp(sourceIp);
  }

  /** Milliseconds the server may stay silent before a call made after this one fails; 0 for none. */
  setIdleTimeout(ms: number): void {
    const idleTimeout = checkMilliseconds(ms, 'ms');
    this.#settings.idleTimeout = idleTimeout;
    this.#handle?.setIdleTimeout(idleTimeout);
  }

  /** Milliseconds that the next opens (and transparent reopens) may take to connect and authenticate; 0 for none. */
  setConnectTimeout(ms: number): void {
    const connectTimeout = checkMilliseconds(ms, 'ms');
    this.#settings.connectTimeout = connectTimeout;
    this.#handle?.setConnectTimeout(connectTimeout);
  }

  /** Sends a command; read its output with output() or outputs(). */
  async command(command: Command, options?: CallOptions): Promise<void> {
    const args = checkCommand(command);
    const signal = checkSignal(readOptions(options, CALL_OPTIONS).signal);
    await this.#sending('send a command', signal, signal !== undefined, (handle) => {
      const reused = this.#reusing();
      // Its span ends once the command is sent, without a status: output()
      // and outputs() read that, a token at a time, and publish nothing.
      if (commandChannel.hasSubscribers) return traceCommand(this.#commandContext(args, reused), () => this.#send(handle, args, signal));
      return this.#send(handle, args, signal);
    });
  }

  async #send(handle: NativeHandle, args: Argument[], signal: AbortSignal | undefined): Promise<void> {
    const failure = await this.#call(handle, handle.command(args, false), signal);
    if (failure !== undefined) {
      this.#lost(handle, failure);
      throw failureError(failure);
    }
    this.#pending = true;
  }

  /** The next token of the current command's output; `done` once it has ended, until the next command. */
  async output(options?: CallOptions): Promise<RemctlOutput> {
    const signal = checkSignal(readOptions(options, CALL_OPTIONS).signal);
    return this.#inTurn(signal, () => this.#nextToken(signal, 0));
  }

  /**
   * The tokens of the current command, ending after its status or error
   * token. Leaving the loop early (break, return, a throw) reads and
   * discards the rest of that command's output, so that it can never be
   * taken for the next command's.
   */
  async *outputs(options?: CallOptions): AsyncGenerator<RemctlOutput, void, undefined> {
    const signal = checkSignal(readOptions(options, CALL_OPTIONS).signal);
    let ended = false;
    try {
      for (;;) {
        // Whatever has already arrived, up to READ_AHEAD_BYTES, is taken in
        // one call to the native side and handed out a token at a time.
        const token = await this.#inTurn(signal, () => this.#nextToken(signal, READ_AHEAD_BYTES));
        if (token.type !== 'output') ended = true;
        yield token;
        if (ended) return;
      }
    } finally {
      if (!ended) await this.#discardOutput();
    }
  }

  /** Checks the connection is alive (and keeps it so); reopens it if the server closed it. */
  async noop(options?: CallOptions): Promise<void> {
    const signal = checkSignal(readOptions(options, CALL_OPTIONS).signal);
    // No remctl:command span: a noop runs nothing on the server, and keep-alives
    // counted as commands would drown the commands. A reopen it makes is a remctl:open.
    await this.#sending('send a noop', signal, signal !== undefined, async (handle) => {
      const failure = await this.#call(handle, handle.noop(), signal);
      if (failure !== undefined) {
        // A server too old for NOOP refused it without a word exchanged.
        if (failure.reason !== 'unsupported') this.#lost(handle, failure);
        throw failureError(failure);
      }
    });
  }

  /**
   * Runs one command on this connection and collects its output, as remctl()
   * does. Rejects with RemctlProtocolError when the server answers with an error.
   */
  async run(command: Command, options?: RunOptions & { encoding?: 'buffer' }): Promise<RemctlResult<Buffer>>;
  async run(command: Command, options: RunOptions & { encoding: BufferEncoding }): Promise<RemctlResult<string>>;
  async run(command: Command, options?: RunOptions): Promise<RemctlResult<string | Buffer>>;
  async run(command: Command, options?: RunOptions): Promise<RemctlResult<string | Buffer>> {
    const args = checkCommand(command);
    const values = readOptions(options, RUN_OPTIONS);
    const signal = checkSignal(values.signal);
    const encoding = checkEncoding(values.encoding);
    const maxBuffer = values.maxBuffer === undefined ? DEFAULT_MAX_BUFFER : checkMaxBuffer(values.maxBuffer);
    const call = callSignal(signal, checkCallTimeout(values.timeout));
    try {
      return await this.#runChecked(args, call.signal, signal !== undefined, encoding, maxBuffer);
    } finally {
      call.done();
    }
  }

  // run() once its arguments are checked. sendLater: the call has a signal
  // of its caller's, which may abort it right after it was made.
  #runChecked(args: Argument[], signal: AbortSignal | undefined, sendLater: boolean, encoding: Encoding, maxBuffer: number) {
    return this.#sending('run a command', signal, sendLater, (handle) => {
      const reused = this.#reusing();
      if (commandChannel.hasSubscribers) {
        return traceCommand(this.#commandContext(args, reused), () => this.#run(handle, args, signal, encoding, maxBuffer));
      }
      return this.#run(handle, args, signal, encoding, maxBuffer);
    });
  }

  // The result is settled in the turn, so that a span over this ends with a
  // protocol error's code too.
  async #run(handle: NativeHandle, args: Argument[], signal: AbortSignal | undefined, encoding: Encoding, maxBuffer: number) {
    const result = await this.#call(handle, handle.run(args, nativeLimit(maxBuffer)), signal);
    if (result.exceeded) {
      // The rest of that output never arrived: the native side closed the
      // connection, and this one stays closed until the next open().
      this.#release();
      this.#target = undefined;
    } else if (!result.ok) {
      this.#lost(handle, result.failure);
    }
    return settleRun(result, encoding, maxBuffer);
  }

  /**
   * Runs a command on this connection and streams its output as it arrives
   * (see RemctlProcess). The connection is this command's until it ends.
   */
  spawn(command: Command, options?: SpawnCallOptions): RemctlProcess {
    const args = checkCommand(command);
    const values = readOptions(options, SPAWN_CALL_OPTIONS);
    const call = callSignal(checkSignal(values.signal), checkCallTimeout(values.timeout));
    // The turn is taken now, so that calls run in the order they were made.
    const parts = this.#spawnParts(args, this.#take(undefined));
    const child = new RemctlProcess(parts.source, [parts.start], call.signal, parts.lost, () => {
      call.done();
      parts.end();
    });
    parts.bind(child);
    return child;
  }

  // What a RemctlProcess needs to run args on this connection, once turn
  // (this call's turn on the connection) has come: the step that sends the
  // command, where its tokens come from, what an abort does, what its end does.
  #spawnParts(args: Argument[], turn: Promise<void> | undefined): SpawnParts {
    let handle: NativeHandle | undefined;
    let child: RemctlProcess | undefined;
    const start = async (aborted: AbortSignal): Promise<NativeFailure | undefined> => {
      await turn;
      // Aborted while waiting: its command must never go out, or its output
      // would be the next call's.
      aborted.throwIfAborted();
      if (this.#pending) throw new RemctlOutputPendingError('spawn a command');
      const opened = await this.#connection(aborted);
      await laterTurn();
      aborted.throwIfAborted();
      handle = opened.serverClosed ? await this.#reopen(aborted) : opened;
      const reused = this.#reusing();
      if (commandChannel.hasSubscribers && child !== undefined) traceStatus(this.#commandContext(args, reused), child.status);
      const failure = await handle.command(args, false);
      if (failure !== undefined) this.#lost(handle, failure);
      return failure;
    };
    return {
      start,
      source: {
        outputBatch: (maxBytes: number) => handle!.outputBatch(maxBytes),
        cancel: () => handle?.cancel(),
      },
      lost: () => {
        if (handle !== undefined) this.#lost(handle);
      },
      end: () => {
        void Promise.resolve(turn).then(() => this.#next());
      },
      bind: (process: RemctlProcess) => {
        child = process;
      },
    };
  }

  /** The text of the last failure, "no error", or "no currently open connection". */
  error(): string {
    const handle = this.#handle;
    if (handle === undefined || handle.closed) return this.#failure ?? 'no currently open connection';
    return handle.error();
  }

  /** Says goodbye to the server and closes the connection, once the calls made before have ended. */
  async close(): Promise<void> {
    this.#closing = true;
    await this.#inTurn(undefined, async () => {
      this.#closing = false;
      const handle = this.#drop();
      this.#target = undefined;
      this.#failure = undefined;
      if (handle !== undefined && !handle.closed) await handle.close();
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // Waits until every call made before has ended (at once when none is
  // under way). The caller must pass the turn on with #next() when done.
  #take(signal: AbortSignal | undefined): Promise<void> | undefined {
    if (!this.#busy) {
      this.#busy = true;
      return undefined;
    }
    const waiter = { resume: () => {}, resumed: false, abandoned: false };
    const turn = new Promise<void>((resolve) => {
      waiter.resume = resolve;
    });
    this.#waiting.push(waiter);
    // Aborted while waiting: the turn is given up unused, also if it came
    // just before the abort did.
    return abortable(turn, signal, () => {
      waiter.abandoned = true;
      if (waiter.resumed) this.#next();
    });
  }

  #next(): void {
    for (;;) {
      const waiter = this.#waiting.shift();
      if (waiter === undefined) {
        this.#busy = false;
        return;
      }
      if (!waiter.abandoned) {
        waiter.resumed = true;
        waiter.resume();
        return;
      }
    }
  }

  // Runs task once every call made before has ended.
  async #inTurn<T>(signal: AbortSignal | undefined, task: () => Promise<T>): Promise<T> {
    signal?.throwIfAborted();
    const turn = this.#take(signal);
    if (turn !== undefined) await turn;
    try {
      return await task();
    } finally {
      this.#next();
    }
  }

  // A call that sends something to the server: in turn, and refused while a
  // command's output is still to be read. With a signal of its caller's
  // (sendLater) it is never sent in the turn of the event loop that made the
  // call, so an abort made right after it wins; without one nothing can
  // abort it (a deadline cannot pass within that turn), and it goes at once.
  async #sending<T>(what: string, signal: AbortSignal | undefined, sendLater: boolean, send: (handle: NativeHandle) => Promise<T>): Promise<T> {
    signal?.throwIfAborted();
    const turn = this.#take(signal);
    if (turn !== undefined) await turn;
    try {
      if (this.#pending) throw new RemctlOutputPendingError(what);
      const handle = this.#handle ?? (await this.#connection(signal));
      // Only a signal can abort a call before it is sent.
      if (sendLater) await laterTurn();
      signal?.throwIfAborted();
      return await send(handle.serverClosed ? await this.#reopen(signal) : handle);
    } finally {
      this.#next();
    }
  }

  // The open connection, reopened first if an aborted call closed it.
  async #connection(signal: AbortSignal | undefined): Promise<NativeHandle> {
    signal?.throwIfAborted();
    const target = this.#target;
    // Calls made before close() still run: only close() itself, in its turn, ends this.
    if (target === undefined) throw new RemctlNotOpenedError();
    if (this.#handle === undefined) {
      this.#failure = undefined;
      this.#handle = await this.#connect(target, signal);
    }
    return this.#handle;
  }

  // A connection the server closed since its last call is replaced before
  // the next goes out (nothing was sent on it, so this is safe): here, as a
  // remctl:open of its own, rather than by the native side inside the call.
  // Asked right before sending, so that the native side, which looks again,
  // finds what this found.
  #reopen(signal: AbortSignal | undefined): Promise<NativeHandle> {
    this.#release();
    return this.#connection(signal);
  }

  // A new native connection to target, opened, with an id of its own that no
  // command has used yet.
  async #connect(target: Target, signal: AbortSignal | undefined): Promise<NativeHandle> {
    const connectionId = nextConnectionId();
    const handle = openChannel.hasSubscribers
      ? await traceOpen(openContext(target, connectionId), () => this.#open(target, signal))
      : await this.#open(target, signal);
    this.#connectionId = connectionId;
    this.#used = false;
    return handle;
  }

  // Whether a command went out on this connection before this one, which does now.
  #reusing(): boolean {
    const used = this.#used;
    this.#used = true;
    return used;
  }

  #commandContext(args: Argument[], reused: boolean): RemctlCommandContext {
    return commandContext(this.#target!, args, this.#connectionId, reused);
  }

  // The native side of #connect(). A failed or abandoned open leaves nothing
  // behind: its handle is closed, the thread opening it told to stop (once
  // libkrb5 lets go, when it is waiting on a KDC), and error() says why.
  async #open(target: Target, signal: AbortSignal | undefined): Promise<NativeHandle> {
    const handle = newHandle(this.#settings);
    handle.trackCredentials();
    const cancel = () => {
      handle.cancel();
      closeQuietly(handle);
    };
    let failure: NativeFailure | undefined;
    try {
      failure = await abortable(openDeadline(handle.open(target), connectTimeoutOf(this.#settings), cancel), signal, cancel);
    } catch (error) {
      if (error instanceof RemctlError) this.#failure = error.message;
      throw error;
    }
    if (failure !== undefined) {
      closeQuietly(handle);
      this.#failure = failure.message;
      throw failureError(failure);
    }
    return handle;
  }

  // The next token, in turn: read ahead by outputs() already, or from the
  // server, with as many more as have arrived whole, up to readAhead bytes.
  async #nextToken(signal: AbortSignal | undefined, readAhead: number): Promise<RemctlOutput> {
    // The handle the token came from: a failure ends that one, and only if it is still ours.
    let source = this.#handle;
    let next = this.#ahead.shift();
    if (next === undefined) {
      source = await this.#connection(signal);
      if (readAhead > 0) {
        const tokens = await this.#call(source, source.outputBatch(readAhead), signal);
        next = tokens.shift();
        // Settled after the connection was lost or closed: the rest is not this one's any more.
        if (this.#handle === source) this.#ahead = tokens;
      } else {
        next = await this.#call(source, source.output(), signal);
      }
    }
    if (next === undefined) throw new RemctlError('no output', 'ERR_REMCTL_BAD_RESPONSE');
    if (isFailure(next)) {
      if (source !== undefined) this.#lost(source, next);
      throw failureError(next);
    }
    if (next.type !== 'output') this.#pending = false;
    return next;
  }

  // A call on handle failed: whatever was under way on it cannot be trusted
  // to be in step, so the next call starts on a fresh connection.
  #lost(handle: NativeHandle, failure?: NativeFailure): void {
    if (this.#handle !== handle) return;
    this.#drop();
    this.#failure = failure?.message;
    handle.cancel();
    closeQuietly(handle);
  }

  // Reads what is left of the current command's output and drops it, within
  // the connection's timeout (DISCARD_TIMEOUT_MS without one); a connection
  // that cannot be brought back in step in that time is closed instead.
  async #discardOutput(): Promise<void> {
    if (!this.#pending) return;
    const timeoutMs = this.#settings.idleTimeout || DISCARD_TIMEOUT_MS;
    await this.#inTurn(undefined, async () => {
      const handle = this.#handle;
      if (!this.#pending || handle === undefined) return;
      // What was read ahead goes first: the output may have ended in it.
      const ahead = this.#ahead;
      this.#ahead = [];
      for (const token of ahead) {
        if (isFailure(token)) {
          this.#lost(handle, token);
          return;
        }
        if (token.type !== 'output') {
          this.#pending = false;
          return;
        }
      }
      const deadline = AbortSignal.timeout(timeoutMs);
      try {
        for (;;) {
          const tokens = await this.#call(handle, handle.outputBatch(DISCARD_BATCH_BYTES), deadline);
          const last = tokens.at(-1);
          if (last === undefined || isFailure(last)) throw last;
          if (last.type !== 'output') break;
        }
        this.#pending = false;
      } catch {
        this.#lost(handle);
      }
    });
  }

  // An aborted call closes the connection: what libremctl was in the middle
  // of cannot be resumed. The next call reopens it.
  #call<T>(handle: NativeHandle, promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    return abortable(promise, signal, () => this.#lost(handle));
  }

  #release(): void {
    const handle = this.#drop();
    if (handle !== undefined) closeQuietly(handle);
  }

  // Takes the native connection away from this object, counting its opens.
  #drop(): NativeHandle | undefined {
    const handle = this.#handle;
    this.#handle = undefined;
    this.#pending = false;
    this.#ahead = [];
    if (handle !== undefined) this.#pastOpens += handle.opens;
    return handle;
  }
}

// How long leaving outputs() early may spend reading the rest of a command's
// output on a connection without a timeout, and in what batches.
const DISCARD_TIMEOUT_MS = 10_000;
// How much of a command's output outputs() takes from the native side at
// once (whatever has arrived, never waiting for more than the next token).
const READ_AHEAD_BYTES = 16 * 1024;
const DISCARD_BATCH_BYTES = 256 * 1024;

/** What a RemctlProcess running a command on a Remctl is made of (see #spawnParts). */
export interface SpawnParts {
  start: (aborted: AbortSignal) => Promise<NativeFailure | undefined>;
  source: { outputBatch(maxBytes: number): Promise<Array<RemctlOutput | NativeFailure>>; cancel(): void };
  lost(): void;
  end(): void;
  bind(process: RemctlProcess): void;
}

// The pool's way into a Remctl it holds: the parts of a spawn() on it, the
// turn taken when they are made. Not part of the package's API.
const SPAWN_PARTS = new WeakMap<Remctl, (args: Argument[]) => SpawnParts>();

export function spawnParts(connection: Remctl, args: Argument[]): SpawnParts {
  return SPAWN_PARTS.get(connection)!(args);
}

// What the pool asks of a Remctl it holds: a run() with checked arguments
// and a signal that may be the pool's alone (which nothing aborts in the
// turn that made the call: sendLater false saves it a turn of the loop);
// when the credentials of its connection expire (Date.now() terms, Infinity
// when unknown; the native side's reopens included); and how many times its
// native connection has opened, those reopens included.
interface Internals {
  run(args: Argument[], signal: AbortSignal, sendLater: boolean, encoding: Encoding, maxBuffer: number | undefined): Promise<RemctlResult<string | Buffer>>;
  credentialsExpire(): number;
  opens(): number;
}
const INTERNALS = new WeakMap<Remctl, Internals>();

export function runOn(
  connection: Remctl,
  args: Argument[],
  signal: AbortSignal,
  sendLater: boolean,
  encoding: Encoding,
  maxBuffer: number | undefined,
): Promise<RemctlResult<string | Buffer>> {
  return INTERNALS.get(connection)!.run(args, signal, sendLater, encoding, maxBuffer);
}

export function credentialsExpire(connection: Remctl): number {
  return INTERNALS.get(connection)!.credentialsExpire();
}

export function opensOf(connection: Remctl): number {
  return INTERNALS.get(connection)!.opens();
}

function closeQuietly(handle: NativeHandle): void {
  if (!handle.closed) handle.close().catch(() => {});
}
