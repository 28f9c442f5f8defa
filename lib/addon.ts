import { createRequire } from 'node:module';
import type { RemctlOutput } from './output.js';

/**
 * Why a native operation failed, as data (see native/convert.h): libremctl's
 * text, what kind of failure the native side found it to be, and the system
 * error under it where one is known.
 */
export interface NativeFailure {
  message: string;
  reason: 'connect' | 'auth' | 'timeout' | 'connectionLost' | 'badResponse' | 'notOpen' | 'cancelled' | 'unsupported' | 'system';
  /** errno, positive as in C. */
  errno?: number;
  /** Set for getaddrinfo only: ENOTFOUND, EAI_AGAIN... */
  code?: string;
  syscall?: string;
  /** The numeric address, or for getaddrinfo the host name. */
  address?: string;
  port?: number;
}

/** Tokens are never failures: only a failure has a reason. */
export function isFailure(value: object): value is NativeFailure {
  return (value as Partial<NativeFailure>).reason !== undefined;
}

/** What the native addon resolves a run to. */
export interface NativeRunResult {
  ok: boolean;
  failure: NativeFailure | undefined;
  stdout: Buffer;
  stderr: Buffer;
  status: number;
  exceeded: boolean;
  errorCode: number | undefined;
  errorMessage: string | undefined;
}

/** A run's values as the native side gives them, the output as ArrayBuffers (undefined when empty). */
export type NativeRunArray = [
  ok: boolean,
  failure: NativeFailure | undefined,
  stdout: ArrayBuffer | undefined,
  stderr: ArrayBuffer | undefined,
  status: number,
  exceeded: boolean,
  errorCode: number | undefined,
  errorMessage: string | undefined,
];

const bytes = (data: ArrayBuffer | undefined): Buffer => (data === undefined ? Buffer.alloc(0) : Buffer.from(data));

// A run's eight values, as settle's arguments (or runSync's array).
const runResult: (...values: NativeRunArray) => NativeRunResult = (ok, failure, stdout, stderr, status, exceeded, errorCode, errorMessage) => ({
  ok,
  failure,
  stdout: bytes(stdout),
  stderr: bytes(stderr),
  status,
  exceeded,
  errorCode,
  errorMessage,
});

/** remctlSync's result, which comes back as an array. */
export function unpackRun(values: NativeRunArray): NativeRunResult {
  return runResult(...values);
}

/** Where to open: a host (and port), numeric addresses, or a descriptor. */
export interface NativeTarget {
  host?: string | undefined;
  port?: number | undefined;
  principal?: string | undefined;
  addresses?: ReadonlyArray<{ address: string; port: number }>;
  fd?: number;
}

/** The native object behind one `struct remctl`. Failures resolve to a NativeFailure. */
export interface NativeHandle {
  open(target: NativeTarget): Promise<NativeFailure | undefined>;
  command(command: ReadonlyArray<string | Uint8Array>, asStrings: boolean): Promise<NativeFailure | undefined>;
  output(): Promise<RemctlOutput | NativeFailure>;
  /**
   * The next token and, while more have already arrived whole, the ones after
   * it, up to about maxBytes; the last element is the failure if reading failed.
   */
  outputBatch(maxBytes: number): Promise<Array<RemctlOutput | NativeFailure>>;
  noop(): Promise<NativeFailure | undefined>;
  run(command: ReadonlyArray<string | Uint8Array>, maxOutput: number): Promise<NativeRunResult>;
  runOnce(target: NativeTarget, command: ReadonlyArray<string | Uint8Array>, maxOutput: number): Promise<NativeRunResult>;
  /** Blocks the calling thread; only on a handle that never ran anything asynchronously. */
  runSync(target: NativeTarget, command: ReadonlyArray<string | Uint8Array>, maxOutput: number, timeoutMs: number): NativeRunArray;
  close(): Promise<void>;
  cancel(): void;
  error(): string;
  setCcache(ccache: string | null): void;
  setSourceIp(ip: string | null): void;
  /** Milliseconds of silence before a call fails, 0 for none; false (with error()) if negative. */
  setIdleTimeout(ms: number): boolean;
  /** Milliseconds a connect to one address may take, 0 for the kernel's. */
  setConnectTimeout(ms: number): void;
  /** After each successful open, find out how long its credentials last (see credentialsLifetime). */
  trackCredentials(): void;
  setOpenRetries(count: number, delayMs: number): void;
  /** SO_RCVBUF and SO_SNDBUF for the sockets it opens next; 0 leaves the kernel's. For the tests. */
  setSocketBuffers(receive: number, send: number): void;
  readonly closed: boolean;
  /** The last open has ended: for a one-shot call, the command is under way. */
  readonly openEnded: boolean;
  /** When the credentials of the last successful open (reopens included) expire, in Date.now() terms; -1 when that cannot be told. */
  readonly credentialsExpire: number;
  /** Successful opens so far, the native side's own reopens included. */
  readonly opens: number;
  /** Between operations: the server closed the connection (or it timed out) since the last exchange, so the next command would reopen it. */
  readonly serverClosed: boolean;
}

interface NativeAddon {
  RemctlHandle: new () => NativeHandle;
  /** getaddrinfo's canonical name for a host, as the C client uses it for the default principal. */
  canonicalName(host: string): string;
  /** The threads of ours this environment has, and how many wait idle for work. */
  threads(): { threads: number; idle: number };
}

const SUPPORTED_NODE = '^20.19.0 || >=22.12.0';

function nodeIsSupported(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major >= 23 || (major === 22 && minor >= 12) || (major === 20 && minor >= 19);
}

// A failed load is reported in a sentence that says what to do about it.
function explain(error: NodeJS.ErrnoException): string {
  const text = error.message;
  if (/libremctl\.so/.test(text)) {
    return 'remctl: cannot load the shared library libremctl: install it (Debian/Ubuntu: apt-get install libremctl1; Fedora/RHEL: dnf install remctl) and try again';
  }
  if (error.code === 'MODULE_NOT_FOUND') {
    return 'remctl: the native addon is not built (build/Release/remctl.node is missing): run `npm rebuild remctl`, which needs libremctl-dev';
  }
  if (/NODE_MODULE_VERSION|napi|N-API|undefined symbol/i.test(text)) {
    return `remctl: the native addon does not load on Node.js ${process.versions.node} (supported: ${SUPPORTED_NODE}): ${text}`;
  }
  return `remctl: cannot load the native addon: ${text}`;
}

function load(): NativeAddon {
  if (!nodeIsSupported(process.versions.node)) {
    throw new Error(`remctl: Node.js ${process.versions.node} is not supported; use Node.js ${SUPPORTED_NODE}`);
  }
  const require = createRequire(import.meta.url);
  try {
    return require('../build/Release/remctl.node') as NativeAddon;
  } catch (error) {
    throw new Error(explain(error as NodeJS.ErrnoException), { cause: error });
  }
}

/**
 * How the native side settles a call: with the error that making its result
 * raised, or with its values (one, or a run's eight: see runResult).
 */
type Settle = (error: unknown, ...values: unknown[]) => void;
type Convert = (...values: any[]) => unknown;

// Made here, not in the wrapper below: the settle function must not keep the
// handle alive (a closure holds its whole scope chain), or a handle dropped
// with a call in flight could never be collected and closed.
function settled(convert: Convert | undefined): [Promise<unknown>, Settle] {
  let settle!: Settle;
  const promise = new Promise<unknown>((resolve, reject) => {
    settle =
      convert === undefined
        ? (error, value) => (error === undefined ? resolve(value) : reject(error))
        : (error, a, b, c, d, e, f, g, h) => (error === undefined ? resolve(convert(a, b, c, d, e, f, g, h)) : reject(error));
  });
  return [promise, settle];
}

const ASYNC_METHODS = ['open', 'command', 'output', 'outputBatch', 'noop', 'run', 'runOnce', 'close'] as const;

const KINDS = [undefined, 'output', 'status', 'error', 'done'] as const;

/** The token at `at` of the native side's flat [kind, data, number, ...] (see native/convert.h). */
function tokenAt(flat: unknown[], at: number): RemctlOutput {
  const kind = KINDS[flat[at] as number];
  const data = flat[at + 1] as ArrayBuffer | undefined;
  const bytes = data === undefined ? Buffer.alloc(0) : Buffer.from(data);
  const number = flat[at + 2] as number;
  switch (kind) {
    case 'output':
      return { type: 'output', data: bytes, stream: number } as RemctlOutput;
    case 'status':
      return { type: 'status', status: number } as RemctlOutput;
    case 'error':
      return { type: 'error', data: bytes, error: number } as RemctlOutput;
    default:
      return { type: 'done' } as RemctlOutput;
  }
}

// The tokens of outputBatch, then the failure if reading failed.
function tokensOf(flat: unknown[]): Array<RemctlOutput | NativeFailure> {
  const tokens: Array<RemctlOutput | NativeFailure> = [];
  let at = 0;
  for (; at + 2 < flat.length; at += 3) tokens.push(tokenAt(flat, at));
  if (at < flat.length) tokens.push(flat[at] as NativeFailure);
  return tokens;
}

const RESULTS: Partial<Record<(typeof ASYNC_METHODS)[number], Convert>> = {
  output: (value: unknown) => (Array.isArray(value) ? tokenAt(value, 0) : value),
  outputBatch: (value: unknown) => tokensOf(value as unknown[]),
  run: runResult,
  runOnce: runResult,
};

// The native methods (_open, _run...) take the settle function last and
// return nothing: a Promise made in JavaScript, unlike a napi_deferred,
// leaves nothing behind when its environment ends with the call still under
// way. These are the methods of NativeHandle, over them.
function promising(native: NativeAddon): NativeAddon {
  const prototype = native.RemctlHandle.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const name of ASYNC_METHODS) {
    const method = prototype[`_${name}`]!;
    const convert = RESULTS[name];
    Object.defineProperty(prototype, name, {
      value(this: unknown, ...args: unknown[]) {
        const [promise, settle] = settled(convert);
        method.call(this, ...args, settle);
        return promise;
      },
    });
  }
  return native;
}

export const addon: NativeAddon = promising(load());

/** Exported for the loader's own tests. */
export const _internal = { explain, nodeIsSupported };
