// The C API, one function each, with the C names and argument order. Like
// the C API, library and remote failures are return values (false or null,
// with the text from remctl_error); only programmer errors throw, as a
// TypeError or RangeError naming the argument. Calls that can wait on the
// network return Promises, driven by the event loop (see native/engine.h).
import { addon, isFailure, type NativeFailure, type NativeHandle, type NativeTarget } from './addon.js';
import type { RemctlOutput } from './output.js';
import {
  checkCommand,
  checkOptionalText,
  checkPort,
  checkText,
  checkTimeout,
  type Command,
} from './validate.js';
import { isIP } from 'node:net';

declare const remctlHandle: unique symbol;

/** An opaque `struct remctl`, from remctl_new(). */
export interface RemctlHandle {
  readonly [remctlHandle]: true;
}

/** What the one-shot remctl() returns, as `struct remctl_result`. */
export interface RemctlCResult {
  /** The error token's message or the failure's text; null when the command ran. */
  error: string | null;
  stdout: Buffer;
  stderr: Buffer;
  status: number;
}

/** A numeric address to connect to. */
export interface SocketAddress {
  address: string;
  port: number;
}

// The handles remctl_new() made: a brand that an object merely given the
// right prototype does not carry.
const handles = new WeakSet<object>();

function handle(r: RemctlHandle | unknown): NativeHandle {
  if (typeof r !== 'object' || r === null || !handles.has(r)) {
    throw new TypeError('r must be a remctl handle from remctl_new()');
  }
  const native = r as NativeHandle;
  if (native.closed) throw new TypeError('r must be an open remctl handle: it was closed');
  return native;
}

function hostAndPrincipal(host: unknown, principal: unknown): { host: string | undefined; principal: string | undefined } {
  const checkedPrincipal = checkOptionalText(principal, 'principal');
  const checkedHost = checkedPrincipal === undefined ? checkText(host, 'host') : checkOptionalText(host, 'host');
  return { host: checkedHost, principal: checkedPrincipal };
}

function checkAddress(value: unknown, name: string): SocketAddress {
  if (typeof value !== 'object' || value === null) {
    throw new TypeError(`${name} must be an object with address and port`);
  }
  let address: unknown;
  let port: unknown;
  try {
    ({ address, port } = value as Record<string, unknown>);
  } catch (error) {
    throw new TypeError(`${name} could not be read: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  }
  if (typeof address !== 'string' || isIP(address) === 0) {
    throw new TypeError(`${name}.address must be a numeric IPv4 or IPv6 address`);
  }
  const checkedPort = checkPort(port, `${name}.port`);
  if (checkedPort === 0) throw new RangeError(`invalid port number: 0 (${name}.port)`);
  return { address, port: checkedPort };
}

// Nothing here may hold the handle while its call waits: an async function's
// suspended frame would, and so would a closure made where the handle is in
// scope (V8 keeps the whole scope chain), and a handle dropped with a call in
// flight could then never be collected and closed by its finalizer. So the
// calls below chain on the native promise with module-level callbacks.
function succeeded(failure: NativeFailure | undefined): boolean {
  return failure === undefined;
}

function tokenOrNull(token: RemctlOutput | NativeFailure): RemctlOutput | null {
  return isFailure(token) ? null : token;
}

function opened(r: NativeHandle, target: NativeTarget): Promise<boolean> {
  return r.open(target).then(succeeded);
}

/**
 * Starts call on r's native handle and settles with then(its result). A
 * check that throws (r is not a handle, a bad argument) rejects instead, as
 * the C call's Promise. call runs at once and is not kept, and then must be
 * a module-level function: neither may hold r while the call waits.
 */
function started<T, R>(r: RemctlHandle, call: (h: NativeHandle) => Promise<T>, then: (value: T) => R): Promise<R> {
  let pending: Promise<T>;
  try {
    pending = call(handle(r));
  } catch (error) {
    return Promise.reject(error);
  }
  return pending.then(then);
}

function checkStrings(args: ReadonlyArray<string | Uint8Array>): void {
  args.forEach((part, i) => {
    if (typeof part !== 'string') throw new TypeError(`command[${i}] must be a string; use remctl_commandv for binary arguments`);
    if (part.includes('\0')) throw new TypeError(`command[${i}] must not contain a NUL byte; use remctl_commandv for binary arguments`);
  });
}

/**
 * The simple interface: connect, run one command, collect its output, close.
 * Arguments are binary-safe. Resolves to `struct remctl_result`'s fields;
 * failures are in `error`.
 */
export async function remctl(host: string, port: number, principal: string | null | undefined, command: Command): Promise<RemctlCResult> {
  const target = { ...hostAndPrincipal(host, principal), port: checkPort(port) };
  const args = checkCommand(command);
  const r = new addon.RemctlHandle();
  const result = await r.runOnce(target, args, 0);
  return {
    error: result.errorMessage ?? result.failure?.message ?? null,
    stdout: result.stdout,
    stderr: result.stderr,
    status: result.status,
  };
}

export function remctl_new(): RemctlHandle {
  const r = new addon.RemctlHandle();
  handles.add(r);
  return r as unknown as RemctlHandle;
}

/** Opens a connection; a port of 0 tries 4373, then 4444. The principal defaults to host/<host>. */
export function remctl_open(r: RemctlHandle, host: string, port: number, principal?: string | null): Promise<boolean> {
  const h = handle(r);
  return opened(h, { host: checkText(host, 'host'), port: checkPort(port), principal: checkOptionalText(principal, 'principal') });
}

/** Opens a connection to the first of these numeric addresses that answers. */
export function remctl_open_addrinfo(r: RemctlHandle, host: string | null, addresses: Iterable<SocketAddress>, principal?: string | null): Promise<boolean> {
  const h = handle(r);
  const names = hostAndPrincipal(host, principal);
  let entries: unknown[];
  try {
    if (addresses === null || typeof (addresses as Iterable<SocketAddress>)?.[Symbol.iterator] !== 'function') {
      throw new TypeError('addresses must be an iterable of { address, port }');
    }
    entries = [...addresses];
  } catch (error) {
    if (error instanceof TypeError) throw error;
    throw new TypeError(`addresses could not be iterated: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  }
  const list = entries.map((entry, i) => checkAddress(entry, `addresses[${i}]`));
  if (list.length === 0) throw new TypeError('addresses must not be empty');
  return opened(h, { ...names, addresses: list });
}

/** Opens a connection to one numeric address. */
export function remctl_open_sockaddr(r: RemctlHandle, host: string | null, address: SocketAddress, principal?: string | null): Promise<boolean> {
  const h = handle(r);
  const names = hostAndPrincipal(host, principal);
  return opened(h, { ...names, addresses: [checkAddress(address, 'address')] });
}

/**
 * Opens a connection over a connected socket. The handle works on its own
 * duplicate of fd: the caller's descriptor stays the caller's to close.
 */
export function remctl_open_fd(r: RemctlHandle, host: string | null, fd: number, principal?: string | null): Promise<boolean> {
  const h = handle(r);
  const names = hostAndPrincipal(host, principal);
  if (typeof fd !== 'number' || !Number.isInteger(fd)) throw new TypeError('fd must be an integer file descriptor');
  if (fd < 0 || fd > 0x7fffffff) throw new RangeError(`fd must be a file descriptor, got ${fd}`);
  return opened(h, { ...names, fd });
}

/** The ticket cache for the handle's next opens; the process environment is not touched. */
export function remctl_set_ccache(r: RemctlHandle, ccache: string): boolean {
  handle(r).setCcache(checkText(ccache, 'ccache'));
  return true;
}

/** The source address for the handle's next connections. */
export function remctl_set_source_ip(r: RemctlHandle, source: string): boolean {
  handle(r).setSourceIp(checkText(source, 'source'));
  return true;
}

/** Seconds of network inactivity before an operation fails; 0 for none. False for a negative timeout. */
export function remctl_set_timeout(r: RemctlHandle, timeout: number): boolean {
  const h = handle(r);
  if (typeof timeout !== 'number' || !Number.isInteger(timeout)) {
    throw new TypeError('timeout must be an integer number of seconds');
  }
  // A negative timeout is libremctl's to refuse (false, with its error).
  return h.setIdleTimeout((timeout < 0 ? Math.max(timeout, -2_000_000) : checkTimeout(timeout)) * 1000);
}

/** Sends a command of strings, as the C function's NUL-terminated strings. */
export function remctl_command(r: RemctlHandle, command: Iterable<string> & object): Promise<boolean> {
  return started(
    r,
    (h) => {
      const args = checkCommand(command);
      checkStrings(args);
      return h.command(args, true);
    },
    succeeded,
  );
}

/** Sends a command whose arguments may be any bytes. */
export function remctl_commandv(r: RemctlHandle, command: Command): Promise<boolean> {
  return started(r, (h) => h.command(checkCommand(command), false), succeeded);
}

/** The next output token, or null on failure (see remctl_error). */
export function remctl_output(r: RemctlHandle): Promise<RemctlOutput | null> {
  return started(r, (h) => h.output(), tokenOrNull);
}

export function remctl_noop(r: RemctlHandle): Promise<boolean> {
  return started(r, (h) => h.noop(), succeeded);
}

/** The text of the last failure on this handle, or "no error". */
export function remctl_error(r: RemctlHandle): string {
  return handle(r).error();
}

/** Says goodbye to the server and frees the handle; any later use throws. */
export function remctl_close(r: RemctlHandle): Promise<void> {
  return handle(r).close();
}
