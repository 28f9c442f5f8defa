import { callSignal, openDeadline } from './abort.js';
import { RemctlProcess } from './process.js';
import { connectTimeoutOf, newHandle, SETTING_NAMES, type ConnectionSettings } from './settings.js';
import { checkSimpleOptions } from './simple.js';
import { commandChannel, commandContext, failing, nextConnectionId, openChannel, openContext, traceOpen, traceStatus } from './tracing.js';
import type { Command } from './validate.js';

export interface SpawnOptions extends ConnectionSettings {
  port?: number;
  principal?: string;
  signal?: AbortSignal;
  /**
   * Milliseconds the whole call may take (connecting, authenticating, the
   * command and all its output, however slowly it is read), then `status`
   * rejects with ERR_REMCTL_TIMEOUT and the connection is closed. 0 (the
   * default) for none.
   */
  timeout?: number;
}

const SPAWN_OPTIONS = [...SETTING_NAMES, 'port', 'principal', 'signal', 'timeout'] as const;

/**
 * Runs one command on its own connection and streams its output as it
 * arrives.
 *
 * @example
 * const child = spawn('files.example.com', ['backup', 'dump']);
 * await pipeline(child.stdout, createWriteStream('dump.tar'));
 * console.log('exit status', await child.status);
 */
export function spawn(host: string, command: Command, options?: SpawnOptions): RemctlProcess {
  const call = checkSimpleOptions(host, command, options, SPAWN_OPTIONS);
  const handle = newHandle(call.settings);
  const deadline = callSignal(call.signal, call.timeout);
  const connectionId = nextConnectionId();
  const open = () => openDeadline(handle.open(call.target), connectTimeoutOf(call.settings), () => handle.cancel());
  const child = new RemctlProcess(
    handle,
    [
      () => (openChannel.hasSubscribers ? traceOpen(openContext(call.target, connectionId), () => failing(open())) : open()),
      () => {
        if (commandChannel.hasSubscribers) traceStatus(commandContext(call.target, call.args, connectionId, false), child.status);
        return handle.command(call.args, false);
      },
    ],
    deadline.signal,
    () => {},
    () => {
      deadline.done();
      if (!handle.closed) handle.close().catch(() => {});
    },
  );
  return child;
}
