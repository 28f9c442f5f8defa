import { abortable, callSignal, laterTurn, openDeadline } from './abort.js';
import type { NativeRunResult } from './addon.js';
import type { RemctlResult } from './output.js';
import { DEFAULT_MAX_BUFFER, nativeLimit, settleRun } from './result.js';
import { checkSettings, connectTimeoutOf, newHandle, SETTING_NAMES, type ConnectionSettings } from './settings.js';
import { RemctlPool, type RemctlPoolRunOptions } from './pool.js';
import { commandChannel, commandContext, nextConnectionId, traceCommand } from './tracing.js';
import {
  checkCallTimeout,
  checkCommand,
  checkEncoding,
  checkMaxBuffer,
  checkOptionalText,
  checkPort,
  checkSignal,
  checkText,
  isInstance,
  readOptions,
  type Command,
} from './validate.js';

export interface RemctlOptions extends ConnectionSettings {
  /**
   * Runs the call on a connection of this pool: the same as pool.run(), and
   * the connection settings are the pool's (only the options of pool.run()
   * may come with it).
   */
  pool?: RemctlPool;
  /** 0 or absent: 4373, falling back to 4444, as libremctl does. */
  port?: number;
  /** The server's principal; absent: libremctl's default, host/<host>. */
  principal?: string;
  signal?: AbortSignal;
  /**
   * Milliseconds the whole call may take (connecting, authenticating, the
   * command and all its output), then it rejects with ERR_REMCTL_TIMEOUT and
   * its connection is closed. 0 (the default) for none.
   */
  timeout?: number;
  /** `'buffer'` (the default) or a Buffer encoding such as `'utf8'` for strings. */
  encoding?: 'buffer' | BufferEncoding;
  /** Bytes of stdout plus stderr kept before the call fails and its connection closes. Default 64 MiB. */
  maxBuffer?: number;
}

export const SIMPLE_OPTIONS = [...SETTING_NAMES, 'port', 'principal', 'signal', 'timeout', 'encoding', 'maxBuffer', 'pool'] as const;

// The pool option, if there is one: anything else under that name is refused.
function poolOf(options: unknown): RemctlPool | undefined {
  if (options === null || typeof options !== 'object') return undefined;
  let pool: unknown;
  try {
    if (!Object.hasOwn(options, 'pool')) return undefined;
    pool = (options as { pool?: unknown }).pool;
  } catch (error) {
    throw new TypeError(`options.pool could not be read: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  }
  if (pool === undefined) return undefined;
  if (!isInstance(pool, RemctlPool)) throw new TypeError('options.pool must be a RemctlPool');
  return pool as RemctlPool;
}

/** The options shared by every call that opens a connection to run one command. */
export function checkSimpleOptions(host: unknown, command: unknown, options: unknown, allowed: readonly string[] = SIMPLE_OPTIONS) {
  const checkedHost = checkText(host, 'host');
  const args = checkCommand(command);
  const values = readOptions(options, allowed);
  const maxBuffer = values.maxBuffer === undefined ? DEFAULT_MAX_BUFFER : checkMaxBuffer(values.maxBuffer);
  return {
    target: { host: checkedHost, port: checkPort(values.port), principal: checkOptionalText(values.principal, 'principal') },
    args,
    settings: checkSettings(values),
    signal: checkSignal(values.signal),
    timeout: checkCallTimeout(values.timeout),
    encoding: checkEncoding(values.encoding),
    maxBuffer,
  };
}

/** A call of remctl(), spawn() or remctlSync(), validated. */
export type SimpleCall = ReturnType<typeof checkSimpleOptions>;

/**
 * Connects, authenticates, runs one command, collects everything and
 * closes: the open on a thread of ours, the command and its output on the
 * event loop.
 *
 * @example
 * const { stdout, status } = await remctl('kdc.example.com', ['kadmin', 'check', 'user'], { encoding: 'utf8' });
 */
export async function remctl(host: string, command: Command, options?: RemctlOptions & { encoding?: 'buffer' }): Promise<RemctlResult<Buffer>>;
export async function remctl(host: string, command: Command, options: RemctlOptions & { encoding: BufferEncoding }): Promise<RemctlResult<string>>;
export async function remctl(host: string, command: Command, options?: RemctlOptions): Promise<RemctlResult<string | Buffer>>;
export async function remctl(host: string, command: Command, options?: RemctlOptions): Promise<RemctlResult<string | Buffer>> {
  const pool = poolOf(options);
  if (pool !== undefined) {
    const { pool: _, ...rest } = options as RemctlOptions & { pool: RemctlPool };
    return pool.run(host, command, rest as RemctlPoolRunOptions);
  }
  const call = checkSimpleOptions(host, command, options);
  if (call.signal !== undefined) {
    call.signal.throwIfAborted();
    // Nothing goes out in the turn that made the call: an abort from the
    // same code, or from a promise continuation of it, comes first. Without
    // a signal nothing can abort it.
    await laterTurn();
    call.signal.throwIfAborted();
  }
  if (commandChannel.hasSubscribers) {
    // One native call opens the connection and runs the command, so the open
    // has no end of its own to publish: this is one remctl:command span,
    // the open included, and reused: false says the connection was opened
    // for it. A remctl:open made up of the same span would be timed wrong.
    const context = commandContext(call.target, call.args, nextConnectionId(), false);
    return traceCommand(context, async () => settleRun(await runOnce(call), call.encoding, call.maxBuffer));
  }
  return settleRun(await runOnce(call), call.encoding, call.maxBuffer);
}

async function runOnce(call: SimpleCall): Promise<NativeRunResult> {
  const handle = newHandle(call.settings);
  const deadline = callSignal(call.signal, call.timeout);
  const cancel = () => handle.cancel();
  try {
    // One native call opens and runs: connectTimeout holds until it says the open has ended.
    const running = openDeadline(handle.runOnce(call.target, call.args, nativeLimit(call.maxBuffer)), connectTimeoutOf(call.settings), cancel, () => !handle.openEnded);
    return await abortable(running, deadline.signal, cancel);
  } finally {
    deadline.done();
  }
}
