import { openDeadline } from './abort.js';
import { RemctlProcess } from './process.js';
import { newHandle, SETTING_NAMES, type ConnectionSettings } from './settings.js';
import { checkSimpleOptions } from './simple.js';
import type { Command } from './validate.js';

export interface SpawnOptions extends ConnectionSettings {
  port?: number;
  principal?: string;
  signal?: AbortSignal;
}

const SPAWN_OPTIONS = [...SETTING_NAMES, 'port', 'principal', 'signal'] as const;

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
  return new RemctlProcess(
    handle,
    [() => openDeadline(handle.open(call.target), call.settings.timeout, () => handle.cancel()), () => handle.command(call.args, false)],
    call.signal,
    () => {},
    () => {
      if (!handle.closed) handle.close().catch(() => {});
    },
  );
}
