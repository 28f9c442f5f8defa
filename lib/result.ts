import type { NativeRunResult } from './addon.js';
import { RemctlError, RemctlProtocolError } from './errors.js';
import { failureError } from './failure.js';
import type { RemctlResult } from './output.js';
import type { Encoding } from './validate.js';

/** stdout plus stderr kept by default before a call fails: 64 MiB. */
export const DEFAULT_MAX_BUFFER = 64 * 1024 * 1024;

/** The limit as the native side takes it: 0 for none. */
export function nativeLimit(maxBuffer: number): number {
  return maxBuffer === Infinity ? 0 : maxBuffer;
}

/** Output past maxBuffer: the call failed and its connection was closed. */
export class MaxBufferError extends RemctlError {
  declare readonly code: 'ERR_REMCTL_MAXBUFFER';
  /** What had arrived before the limit was reached. */
  readonly stdout: Buffer;
  readonly stderr: Buffer;

  constructor(maxBuffer: number, stdout: Buffer, stderr: Buffer) {
    super(`stdout and stderr exceeded maxBuffer (${maxBuffer} bytes); the connection was closed`, 'ERR_REMCTL_MAXBUFFER');
    this.name = 'MaxBufferError';
    this.stdout = stdout;
    this.stderr = stderr;
  }
}

/** Turns what the native side collected into a result, or the error it amounts to. */
export function settleRun(raw: NativeRunResult, encoding: Encoding, maxBuffer: number): RemctlResult<string | Buffer> {
  if (!raw.ok) throw failureError(raw.failure!);
  if (raw.exceeded) throw new MaxBufferError(maxBuffer, raw.stdout, raw.stderr);
  if (raw.errorCode !== undefined) throw new RemctlProtocolError(raw.errorMessage ?? '', raw.errorCode);
  if (encoding === 'buffer') return { stdout: raw.stdout, stderr: raw.stderr, status: raw.status };
  return { stdout: raw.stdout.toString(encoding), stderr: raw.stderr.toString(encoding), status: raw.status };
}
