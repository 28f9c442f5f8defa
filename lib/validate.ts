// Validators shared by every public function: bad input is refused here,
// with a message that names the argument and says what was wrong, before
// anything reaches native code or the network.
import { isIP } from 'node:net';

export type Argument = string | Uint8Array;

/**
 * A command: an array (any iterable) of arguments. `& object` keeps a lone
 * string, which is an iterable of strings too, from passing as one.
 */
export type Command = Iterable<Argument> & object;

/**
 * `value instanceof type`, false where asking throws (a Proxy whose
 * getPrototypeOf trap throws): a hostile value is refused, not obeyed.
 */
export function isInstance(value: unknown, type: abstract new (...args: never[]) => unknown): boolean {
  try {
    return value instanceof type;
  } catch {
    return false;
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return `${typeof value} ${String(value)}`;
  if (isInstance(value, Uint8Array)) return 'a Buffer';
  if (typeof value !== 'object') return typeof value;
  try {
    return Array.isArray(value) ? 'an array' : 'an object';
  } catch {
    return 'an object';
  }
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}

/**
 * Reads an options object, refusing names it does not know (with a
 * suggestion for a likely misspelling) and getters that throw.
 */
export function readOptions(options: unknown, allowed: readonly string[], name = 'options'): Record<string, unknown> {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`${name} must be an object, got ${describe(options)}`);
  }
  const values: Record<string, unknown> = {};
  let keys: string[];
  try {
    keys = Object.keys(options);
  } catch (error) {
    throw new TypeError(`${name} could not be read: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  }
  for (const key of keys) {
    if (!allowed.includes(key)) {
      const close = allowed.find((known) => editDistance(key.toLowerCase(), known.toLowerCase()) <= 2);
      const hint = close ? `; did you mean "${close}"?` : `; known options: ${allowed.join(', ')}`;
      throw new TypeError(`unknown option "${key}" in ${name}${hint}`);
    }
    try {
      values[key] = (options as Record<string, unknown>)[key];
    } catch (error) {
      throw new TypeError(`${name}.${key} could not be read: ${(error as Error)?.message ?? String(error)}`, { cause: error });
    }
  }
  return values;
}

/** A non-empty string without NUL bytes, which C strings cannot carry. */
export function checkText(value: unknown, name: string): string {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string, got ${describe(value)}`);
  if (value.length === 0) throw new TypeError(`${name} must not be empty`);
  if (value.includes('\0')) throw new TypeError(`${name} must not contain a NUL byte`);
  return value;
}

export function checkOptionalText(value: unknown, name: string): string | undefined {
  return value === undefined || value === null ? undefined : checkText(value, name);
}

/** 0 (or absent) for libremctl's default of 4373 then 4444, else 1 to 65535. */
export function checkPort(value: unknown, name = 'port'): number {
  if (value === undefined || value === null) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer, got ${describe(value)}`);
  }
  if (value < 0 || value > 65535) throw new RangeError(`invalid port number: ${value}`);
  return value;
}

/** Whole seconds of network inactivity, as remctl_set_timeout takes; 0 for none. */
export function checkTimeout(value: unknown, name = 'timeout'): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`${name} must be a number of seconds, got ${describe(value)}`);
  }
  if (!Number.isInteger(value) || value < 0 || value > 2_000_000) {
    throw new RangeError(`${name} must be a whole number of seconds from 0 to 2000000, got ${value}`);
  }
  return value;
}

/** The longest duration a timer takes (about 24.8 days), as setTimeout's. */
export const MAX_MILLISECONDS = 2_147_483_647;

/** A duration in whole milliseconds, 0 for none. */
export function checkMilliseconds(value: unknown, name: string): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`${name} must be a number of milliseconds, got ${describe(value)}`);
  }
  if (!Number.isInteger(value) || value < 0 || value > MAX_MILLISECONDS) {
    throw new RangeError(`${name} must be a whole number of milliseconds from 0 to ${MAX_MILLISECONDS}, got ${value}`);
  }
  return value;
}

/** A call's `timeout` option: whole milliseconds, 0 or absent for none. */
export function checkCallTimeout(value: unknown): number {
  return value === undefined ? 0 : checkMilliseconds(value, 'timeout');
}

/** An IPv4 or IPv6 address to connect from (libremctl also takes "any" and "all"). */
export function checkSourceIp(value: unknown, name = 'sourceIp'): string {
  const text = checkText(value, name);
  if (isIP(text) === 0 && text !== 'any' && text !== 'all') {
    throw new TypeError(`${name} must be an IPv4 or IPv6 address, got ${describe(text)}`);
  }
  return text;
}

/** A positive whole number of bytes, or Infinity for no limit. */
export function checkMaxBuffer(value: unknown, name = 'maxBuffer'): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`${name} must be a number of bytes, got ${describe(value)}`);
  }
  if (value !== Infinity && (!Number.isSafeInteger(value) || value <= 0)) {
    throw new RangeError(`${name} must be a positive whole number of bytes or Infinity, got ${value}`);
  }
  return value;
}

export type Encoding = 'buffer' | BufferEncoding;

export function checkEncoding(value: unknown, name = 'encoding'): Encoding {
  if (value === undefined || value === null || value === 'buffer') return 'buffer';
  if (typeof value !== 'string' || !Buffer.isEncoding(value)) {
    throw new TypeError(`${name} must be "buffer" or a Buffer encoding such as "utf8", got ${describe(value)}`);
  }
  return value;
}

export function checkSignal(value: unknown, name = 'signal'): AbortSignal | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isInstance(value, AbortSignal)) throw new TypeError(`${name} must be an AbortSignal, got ${describe(value)}`);
  return value as AbortSignal;
}

/**
 * A command: a non-empty iterable of strings (sent as UTF-8) and Buffers or
 * Uint8Arrays. A lone string or Buffer is refused: "test test" is not
 * ["test", "test"].
 */
export function checkCommand(value: unknown, name = 'command'): Argument[] {
  if (typeof value === 'string' || isInstance(value, Uint8Array)) {
    throw new TypeError(`${name} must be an iterable of arguments, not a single ${typeof value === 'string' ? 'string' : 'Buffer'}: pass ["test", "test"], not "test test"`);
  }
  const args: Argument[] = [];
  try {
    if (value === null || value === undefined || typeof (value as Iterable<unknown>)[Symbol.iterator] !== 'function') {
      throw new TypeError(`${name} must be an iterable of strings or Buffers, got ${describe(value)}`);
    }
    for (const part of value as Iterable<unknown>) {
      if (typeof part !== 'string' && !isInstance(part, Uint8Array)) {
        throw new TypeError(`command arguments must be strings or Buffers (${name}[${args.length}] is ${describe(part)})`);
      }
      args.push(part as Argument);
    }
  } catch (error) {
    if (error instanceof TypeError) throw error;
    throw new TypeError(`${name} could not be iterated: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  }
  if (args.length === 0) throw new TypeError(`${name} must not be empty`);
  return args;
}
