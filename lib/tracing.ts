// The diagnostics_channel tracing channels remctl:open and remctl:command.
// Every caller checks `hasSubscribers` (true on Node.js 20.19 and later
// when any of the five sub-channels has a subscriber or a bound store)
// before it builds a context or a closure, so that a call nobody traces
// costs one getter and allocates nothing.
import { tracingChannel } from 'node:diagnostics_channel';
import type { NativeFailure } from './addon.js';
import { failureError } from './failure.js';
import type { Argument } from './validate.js';

/** What remctl:open publishes, the same object on each of its events. */
export interface RemctlOpenContext {
  host: string;
  /** The port asked for: 0 for libremctl's default, 4373 falling back to 4444. */
  port: number;
  /** The server's principal asked for; undefined for the default, host/<host>. */
  principal: string | undefined;
  /** Unique among the native connections of this process. */
  connectionId: number;
  /** On failure, the error's `code`, when it has a string one. */
  code?: string;
}

/** What remctl:command publishes, the same object on each of its events. */
export interface RemctlCommandContext extends RemctlOpenContext {
  /** The command and subcommand: the first two arguments at most, Buffers decoded as UTF-8. Never the others. */
  command: string[];
  /** Whether an earlier command ran on this connection. */
  reused: boolean;
  /** The exit status, once it has arrived (absent for Remctl#command(), whose output the caller reads). */
  status?: number;
}

/** Where a connection goes, as the lib/ calls hold it after validation. */
export interface Target {
  host: string;
  port: number;
  principal: string | undefined;
}

export const openChannel = tracingChannel<unknown, RemctlOpenContext>('remctl:open');
export const commandChannel = tracingChannel<unknown, RemctlCommandContext>('remctl:command');

let lastConnectionId = 0;

/** A new connection's id, from 1. */
export function nextConnectionId(): number {
  return ++lastConnectionId;
}

export function openContext(target: Target, connectionId: number): RemctlOpenContext {
  return { host: target.host, port: target.port, principal: target.principal, connectionId };
}

export function commandContext(target: Target, args: readonly Argument[], connectionId: number, reused: boolean): RemctlCommandContext {
  // The first two words only: the arguments after them may be passwords or keys.
  const command = args.length > 1 ? [word(args[0]!), word(args[1]!)] : [word(args[0]!)];
  return { host: target.host, port: target.port, principal: target.principal, command, connectionId, reused };
}

function word(arg: Argument): string {
  return typeof arg === 'string' ? arg : Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength).toString('utf8');
}

// What the traced calls resolve to is kept out of the context, where
// tracePromise would put it as `result`: a command's output can be as secret
// as its arguments, and a connection's native handle is ours alone. So the
// traced function resolves to nothing, and the value goes back to the caller
// beside it.

/** open() as a remctl:open span; `result` stays undefined. */
export async function traceOpen<T>(context: RemctlOpenContext, open: () => Promise<T>): Promise<T> {
  let value!: T;
  await openChannel.tracePromise(async () => {
    try {
      value = await open();
    } catch (error) {
      noteCode(context, error);
      throw error;
    }
  }, context);
  return value;
}

/** What a command resolves to: its result, its exit status, or nothing (sent, its output still to read). */
type Outcome = { status: number } | number | void;

/** run() as a remctl:command span, with its exit status; `result` stays undefined. */
export async function traceCommand<T extends Outcome>(context: RemctlCommandContext, run: () => Promise<T>): Promise<T> {
  let value!: T;
  await commandChannel.tracePromise(async () => {
    try {
      value = await run();
    } catch (error) {
      noteCode(context, error);
      throw error;
    }
    noteStatus(context, value);
  }, context);
  return value;
}

/**
 * A streamed command as a remctl:command span, from now, as it is about to
 * be sent, until its status settles: until its output has ended. Its failure
 * is for the caller of status to handle; here it is only published.
 */
export function traceStatus(context: RemctlCommandContext, status: Promise<number>): void {
  traceCommand(context, () => status).catch(() => {});
}

/** A step's failure (see Step in process.ts) as the RemctlError it amounts to, so that a span can publish it. */
export async function failing(step: Promise<NativeFailure | undefined>): Promise<undefined> {
  const failure = await step;
  if (failure !== undefined) throw failureError(failure);
  return undefined;
}

/** traceCommand() for remctlSync(): start, end, and error in between when it throws. */
export function traceCommandSync<T extends Outcome>(context: RemctlCommandContext, run: () => T): T {
  let value!: T;
  commandChannel.traceSync(() => {
    try {
      value = run();
    } catch (error) {
      noteCode(context, error);
      throw error;
    }
    noteStatus(context, value);
  }, context);
  return value;
}

function noteStatus(context: RemctlCommandContext, value: Outcome): void {
  const status = typeof value === 'number' ? value : value?.status;
  if (status !== undefined) context.status = status;
}

// Set before the error event, so that its subscribers see it.
function noteCode(context: RemctlOpenContext, error: unknown): void {
  try {
    const code = (error as { code?: unknown } | null | undefined)?.code;
    if (typeof code === 'string') context.code = code;
  } catch {
    // An abort reason whose code getter throws: it has no code, and the call still rejects with it.
  }
}
