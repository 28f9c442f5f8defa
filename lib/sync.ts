import { unpackRun } from './addon.js';
import type { RemctlResult } from './output.js';
import { nativeLimit, settleRun } from './result.js';
import { newHandle, SETTING_NAMES } from './settings.js';
import { checkSimpleOptions, type RemctlOptions, type SimpleCall } from './simple.js';
import { commandChannel, commandContext, nextConnectionId, traceCommandSync } from './tracing.js';
import type { Command } from './validate.js';

export type RemctlSyncOptions = Omit<RemctlOptions, 'signal' | 'pool'>;

const SYNC_OPTIONS = [...SETTING_NAMES, 'port', 'principal', 'timeout', 'encoding', 'maxBuffer'] as const;

/**
 * remctl() for scripts that have nothing else to do: blocks until the
 * command has finished, like child_process.execFileSync, and returns its
 * result or throws.
 */
export function remctlSync(host: string, command: Command, options?: RemctlSyncOptions & { encoding?: 'buffer' }): RemctlResult<Buffer>;
export function remctlSync(host: string, command: Command, options: RemctlSyncOptions & { encoding: BufferEncoding }): RemctlResult<string>;
export function remctlSync(host: string, command: Command, options?: RemctlSyncOptions): RemctlResult<string | Buffer>;
export function remctlSync(host: string, command: Command, options?: RemctlSyncOptions): RemctlResult<string | Buffer> {
  const call = checkSimpleOptions(host, command, options, SYNC_OPTIONS);
  // As remctl(): one remctl:command span, the open included (reused: false).
  if (commandChannel.hasSubscribers) {
    return traceCommandSync(commandContext(call.target, call.args, nextConnectionId(), false), () => runSync(call));
  }
  return runSync(call);
}

function runSync(call: SimpleCall): RemctlResult<string | Buffer> {
  const handle = newHandle(call.settings);
  const raw = handle.runSync(call.target, call.args, nativeLimit(call.maxBuffer), call.timeout);
  return settleRun(unpackRun(raw), call.encoding, call.maxBuffer);
}
