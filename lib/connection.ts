import { abortable, openDeadline } from './abort.js';
import { unpackRun, type NativeHandle } from './addon.js';
import { RemctlError, RemctlNotOpenedError } from './errors.js';
import type { RemctlOutput, RemctlResult } from './output.js';
import { RemctlProcess } from './process.js';
import { DEFAULT_MAX_BUFFER, nativeLimit, settleRun } from './result.js';
import { checkSettings, newHandle, SETTING_NAMES, type ConnectionSettings } from './settings.js';
import {
  checkCommand,
  checkEncoding,
  checkMaxBuffer,
  checkOptionalText,
  checkPort,
  checkSignal,
  checkSourceIp,
  checkText,
  checkTimeout,
  readOptions,
  type Command,
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

export interface RunOptions extends CallOptions {
  encoding?: 'buffer' | BufferEncoding;
  maxBuffer?: number;
}

const OPEN_OPTIONS = ['port', 'principal', 'signal'] as const;
const CALL_OPTIONS = ['signal'] as const;
const RUN_OPTIONS = ['signal', 'encoding', 'maxBuffer'] as const;

/**
 * A persistent connection: several commands over one authenticated
 * session. Calls run in the order they were made, on the connection's own
 * thread. A connection the server closed between commands is reopened by
 * the next command.
 *
 * @example
 * await using r = await Remctl.connect('kdc.example.com');
 * const { stdout } = await r.run(['kadmin', 'check', 'user'], { encoding: 'utf8' });
 */
export class Remctl implements AsyncDisposable {
  #settings: ConnectionSettings;
  #handle: NativeHandle | undefined;
  #opened = false;
  // Why the last open failed: its handle (and thread) are gone already.
  #failure: string | undefined;
  // Calls take turns: a call spanning several native operations (spawn,
  // outputs) holds the connection until it is done. A call finding the
  // connection free takes it at once, without a promise to wait on.
  #busy = false;
  #waiting: Array<{ resume: () => void; resumed: boolean; abandoned: boolean }> = [];
  // close() was called; calls made before it still run.
  #closing = false;

  constructor(options?: ConnectionSettings) {
    this.#settings = checkSettings(readOptions(options, SETTING_NAMES));
  }

  /** A new connection, opened. */
  static async connect(host: string, options?: ConnectOptions): Promise<Remctl> {
    const values = readOptions(options, [...SETTING_NAMES, ...OPEN_OPTIONS]);
    const { port, principal, signal, ...settings } = values;
    const connection = new Remctl(settings as ConnectionSettings);
    await connection.open(host, { port, principal, signal } as OpenOptions);
    return connection;
  }

  /** True between a successful open() and a call of close() (or an abort). */
  get opened(): boolean {
    return this.#opened && !this.#closing;
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
      this.#failure = undefined;
      const handle = newHandle(this.#settings);
      this.#handle = handle;
      const opening = openDeadline(handle.open(target), this.#settings.timeout, () => handle.cancel());
      const failure = await this.#call(handle, opening, signal);
      if (this.#handle !== handle) return;
      if (failure !== undefined) {
        this.#release();
        this.#failure = failure;
        throw new RemctlError(failure);
      }
      this.#opened = true;
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

  /** Seconds of network inactivity before an operation issued after this call fails; 0 for none. */
  setTimeout(seconds: number): void {
    if (typeof seconds === 'number' && Number.isInteger(seconds) && seconds < 0) {
      throw new RemctlError(`invalid timeout ${seconds}`);
    }
    const timeout = checkTimeout(seconds, 'seconds');
    this.#settings.timeout = timeout;
    this.#handle?.setTimeout(timeout);
  }

  /** Sends a command; read its output with output() or outputs(). */
  async command(command: Command, options?: CallOptions): Promise<void> {
    const args = checkCommand(command);
    const signal = checkSignal(readOptions(options, CALL_OPTIONS).signal);
    const failure = await this.#exclusive(signal, (handle) => handle.command(args, false));
    if (failure !== undefined) throw new RemctlError(failure);
  }

  /** The next token of the current command's output; `done` once it has ended, until the next command. */
  async output(options?: CallOptions): Promise<RemctlOutput> {
    const signal = checkSignal(readOptions(options, CALL_OPTIONS).signal);
    const token = await this.#exclusive(signal, (handle) => handle.output());
    if (typeof token === 'string') throw new RemctlError(token);
    return token;
  }

  /** The tokens of the current command, ending after its status or error token. */
  async *outputs(options?: CallOptions): AsyncGenerator<RemctlOutput, void, undefined> {
    for (;;) {
      const token = await this.output(options);
      yield token;
      if (token.type !== 'output') return;
    }
  }

  /** Checks the connection is alive (and keeps it so); reopens it if the server closed it. */
  async noop(options?: CallOptions): Promise<void> {
    const signal = checkSignal(readOptions(options, CALL_OPTIONS).signal);
    const failure = await this.#exclusive(signal, (handle) => handle.noop());
    if (failure !== undefined) throw new RemctlError(failure);
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
    const raw = await this.#exclusive(signal, async (handle) => {
      const result = unpackRun(await handle.run(args, nativeLimit(maxBuffer)));
      // The rest of that output never arrived: the native side closed the connection.
      if (result.exceeded && this.#handle === handle) this.#release();
      return result;
    });
    return settleRun(raw, encoding, maxBuffer);
  }

  /**
   * Runs a command on this connection and streams its output as it arrives
   * (see RemctlProcess). The connection is this command's until it ends.
   */
  spawn(command: Command, options?: CallOptions): RemctlProcess {
    const args = checkCommand(command);
    const signal = checkSignal(readOptions(options, CALL_OPTIONS).signal);
    const turn = this.#take(undefined);
    let handle: NativeHandle | undefined;
    const start = async (aborted: AbortSignal): Promise<string | undefined> => {
      await turn;
      // Aborted while waiting: its command must never go out, or its output
      // would be the next call's.
      aborted.throwIfAborted();
      handle = this.#open(undefined);
      return handle.command(args, false);
    };
    const source = {
      outputBatch: (maxBytes: number) => handle!.outputBatch(maxBytes),
      cancel: () => handle?.cancel(),
    };
    return new RemctlProcess(
      source,
      [start],
      signal,
      () => {
        if (handle !== undefined && this.#handle === handle) this.#release();
      },
      () => {
        void Promise.resolve(turn).then(() => this.#next());
      },
    );
  }

  /** The text of the last failure, "no error", or "no currently open connection". */
  error(): string {
    const handle = this.#handle;
    if (handle === undefined || handle.closed) return this.#failure ?? 'no currently open connection';
    return handle.error();
  }

  /** Says goodbye to the server and ends the connection's thread, once the calls made before have ended. */
  async close(): Promise<void> {
    this.#closing = true;
    await this.#inTurn(undefined, async () => {
      this.#closing = false;
      const handle = this.#handle;
      this.#handle = undefined;
      this.#opened = false;
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

  // An operation on the open connection, in turn.
  #exclusive<T>(signal: AbortSignal | undefined, operation: (handle: NativeHandle) => Promise<T>): Promise<T> {
    return this.#inTurn(signal, () => {
      const handle = this.#open(signal);
      return this.#call(handle, operation(handle), signal);
    });
  }

  #open(signal: AbortSignal | undefined): NativeHandle {
    signal?.throwIfAborted();
    if (!this.#opened || this.#handle === undefined) throw new RemctlNotOpenedError();
    return this.#handle;
  }

  // An aborted call closes the connection: what libremctl was in the middle
  // of cannot be resumed.
  #call<T>(handle: NativeHandle, promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    return abortable(promise, signal, () => {
      handle.cancel();
      if (this.#handle === handle) this.#release();
    });
  }

  #release(): void {
    const handle = this.#handle;
    this.#handle = undefined;
    this.#opened = false;
    if (handle !== undefined && !handle.closed) handle.close().catch(() => {});
  }
}
