import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import { abortable, laterTurn } from './abort.js';
import { isFailure, type NativeFailure } from './addon.js';
import { RemctlError, RemctlProtocolError } from './errors.js';
import { failureError } from './failure.js';
import type { RemctlOutput } from './output.js';

/**
 * What has to happen before the output can be read (open, send the command):
 * each resolves to undefined or the failure, and is started only while
 * the process has not been aborted.
 */
export type Step = (signal: AbortSignal) => Promise<NativeFailure | undefined>;

/** Where a process reads its tokens from: the native handle its command was sent on. */
export interface TokenSource {
  /** The next tokens (see NativeHandle.outputBatch), the last the failure if reading failed. */
  outputBatch(maxBytes: number): Promise<Array<RemctlOutput | NativeFailure>>;
  cancel(): void;
}

// Tokens are fetched in batches of what has already arrived, up to this
// much, one fetch at a time: the event loop reads a token as soon as it is
// whole, so a second fetch under way would only hold more memory. Measured
// with 256 MiB of 4 KiB tokens: 4 KiB batches grow the process by about 15
// MiB, 16 KiB ones by 20, 64 KiB ones by 28 to 30, at about the same speed.
// Memory wins: the streams promise it stays flat.
const BATCH_BYTES = 4 * 1024;

/**
 * A command running on the server, shaped after child_process.spawn():
 * stdout and stderr are Readable streams that receive each output token as
 * it arrives, and no further token is read from the server while either
 * stream is full, so memory stays flat whatever the output's size.
 *
 * Only a status token ends stdout and stderr normally (whatever the
 * status). Any failure (a timeout, an abort, a lost connection, an error
 * token, garbage from the server) rejects `status`, destroys both streams
 * with that error, so that `pipeline()`, `for await` and `finished()` reject
 * with it too, and is emitted as 'error' when the process has a listener.
 * A stream without an 'error' listener of its own does not end the process
 * with the failure: `status` and the consumers of the stream report it.
 */
export class RemctlProcess extends EventEmitter<{ exit: [status: number]; error: [error: Error] }> {
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** The command's exit status, 0 to 255. */
  readonly status: Promise<number>;

  #handle: TokenSource;
  // Runs once, as the command ends: true when the connection is still in
  // step (the output ended with its status, or with an error token).
  #onEnd: (ok: boolean) => void;
  #controller = new AbortController();
  #onAbort: () => void;
  #waitingOn: Readable | undefined;
  #resume: (() => void) | undefined;
  #settle!: { resolve: (status: number) => void; reject: (error: unknown) => void };

  /**
   * @internal Made by spawn() and Remctl#spawn(). onAbort runs when the
   * command is aborted or its connection failed: the connection is out of
   * step and must not carry another command.
   */
  constructor(handle: TokenSource, steps: ReadonlyArray<Step>, signal: AbortSignal | undefined, onAbort: () => void, onEnd: (ok: boolean) => void) {
    super();
    this.#handle = handle;
    this.#onAbort = onAbort;
    this.stdout = new Readable({ read: () => this.#wanted(this.stdout) });
    this.stderr = new Readable({ read: () => this.#wanted(this.stderr) });
    for (const stream of [this.stdout, this.stderr]) stream.once('close', () => this.#wanted(stream));
    this.status = new Promise<number>((resolve, reject) => {
      this.#settle = { resolve, reject };
    });
    // Awaiting status is optional: a failure nobody asked about is not an unhandled rejection.
    this.status.catch(() => {});
    const follow = () => this.abort(signal!.reason);
    if (signal !== undefined) {
      if (signal.aborted) this.#controller.abort(signal.reason);
      else signal.addEventListener('abort', follow, { once: true });
    }
    let ended = false;
    this.#onEnd = (ok) => {
      if (ended) return;
      ended = true;
      // A long-lived signal (a pool's) must not keep every process it saw.
      signal?.removeEventListener('abort', follow);
      onEnd(ok);
    };
    void this.#run(steps);
  }

  /** Ends the command's connection at once; `status` rejects with the reason (an AbortError by default). */
  abort(reason?: unknown): void {
    this.#controller.abort(reason ?? new DOMException('The operation was aborted', 'AbortError'));
  }

  /** The same as abort(), under child_process's name. */
  kill(): void {
    this.abort();
  }

  async #run(steps: ReadonlyArray<Step>): Promise<void> {
    const signal = this.#controller.signal;
    const interrupt = () => {
      this.#handle.cancel();
      this.#onAbort();
    };
    try {
      // Nothing goes out in the turn that made the call: an abort from the
      // same code, or from a promise continuation of it, comes first.
      await laterTurn();
      for (const step of steps) {
        signal.throwIfAborted();
        const failure = await abortable(step(signal), signal, interrupt);
        if (failure !== undefined) throw failureError(failure);
      }
      for (;;) {
        let full: Readable | undefined;
        for (const token of await abortable(this.#handle.outputBatch(BATCH_BYTES), signal, interrupt)) {
          if (isFailure(token)) {
            this.#onAbort();
            throw failureError(token);
          }
          if (token.type === 'output') {
            const stream = token.stream === 2 ? this.stderr : this.stdout;
            if (!stream.destroyed && !stream.push(token.data)) full = stream;
          } else if (token.type === 'error') {
            throw new RemctlProtocolError(token.data.toString(), token.error);
          } else if (token.type === 'status') {
            this.#end();
            // Before status settles, so that whoever awaits it finds the
            // connection given back (to its Remctl, to its pool).
            this.#onEnd(true);
            this.#settle.resolve(token.status);
            this.emit('exit', token.status);
            return;
          } else {
            this.#onAbort();
            throw new RemctlError('the output of the command ended without an exit status', 'ERR_REMCTL_BAD_RESPONSE');
          }
        }
        if (full !== undefined) await this.#drained(full, signal);
      }
    } catch (error) {
      this.#fail(error);
    }
  }

  // Whatever the streams already carried may be cut short: they fail, and
  // never end as if the output were complete.
  #fail(error: unknown): void {
    this.#onEnd(error instanceof RemctlProtocolError);
    this.#settle.reject(error);
    for (const stream of [this.stdout, this.stderr]) {
      if (stream.destroyed) continue;
      if (stream.listenerCount('error') === 0) stream.on('error', () => {});
      stream.destroy(error as Error);
    }
    if (this.listenerCount('error') > 0) this.emit('error', error as Error);
  }

  // Waits until the consumer wants more of this stream (or threw it away).
  #drained(stream: Readable, signal: AbortSignal): Promise<void> {
    return abortable(
      new Promise<void>((resolve) => {
        this.#waitingOn = stream;
        this.#resume = resolve;
      }),
      signal,
      () => {
        this.#handle.cancel();
        this.#onAbort();
      },
    );
  }

  #wanted(stream: Readable): void {
    if (this.#waitingOn !== stream) return;
    const resume = this.#resume;
    this.#waitingOn = undefined;
    this.#resume = undefined;
    resume?.();
  }

  #end(): void {
    for (const stream of [this.stdout, this.stderr]) if (!stream.destroyed) stream.push(null);
  }
}
