import { RemctlError } from './errors.js';

/**
 * Resolves in a later turn of the event loop. Everything that sends a
 * command waits for it first, so an abort from the code that made the call,
 * or from a promise continuation of it, always comes before the command
 * could leave.
 */
export function laterTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Settles with `promise`, unless `signal` aborts first: then `onAbort` runs
 * (it interrupts the native call) and the result rejects at once with the
 * signal's reason, without waiting for the native side to notice.
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined, onAbort: () => void): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) {
    onAbort();
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const abort = () => {
      onAbort();
      reject(signal.reason);
    };
    signal.addEventListener('abort', abort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', abort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', abort);
        reject(error);
      },
    );
  });
}

/**
 * An open that has not settled within connectTimeout is given up: `onExpire`
 * interrupts it and the result rejects. This bounds what no socket timeout
 * sees, a KDC that does not answer libkrb5; the thread opening finishes in
 * the background. For a one-shot call, which opens and runs in one native
 * call, `opening` says whether the open is still under way when the time is up.
 */
export function openDeadline<T>(promise: Promise<T>, ms: number | undefined, onExpire: () => void, opening?: () => boolean): Promise<T> {
  if (!ms) return promise;
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      if (opening !== undefined && !opening()) return;
      onExpire();
      reject(new RemctlError(`timed out after ${ms} ms connecting and authenticating: no answer from the server or from the KDC`, 'ERR_REMCTL_TIMEOUT'));
    }, ms);
    // Never what keeps a process alive: the call under way does that.
    timer.unref();
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** A call's signal and its deadline as one signal; `done()` once the call has settled. */
export interface CallSignal {
  signal: AbortSignal | undefined;
  done(): void;
}

const NO_DEADLINE_DONE = () => {};

/**
 * The signal a call runs under: its caller's, and its `timeout` (whole
 * milliseconds, 0 for none), which aborts it with ERR_REMCTL_TIMEOUT as an
 * abort would: rejected at once, the connection closed, the command never
 * sent if it had not gone yet.
 */
export function callSignal(signal: AbortSignal | undefined, timeoutMs: number | undefined): CallSignal {
  if (!timeoutMs) return { signal, done: NO_DEADLINE_DONE };
  const controller = new AbortController();
  const timer = setTimeout(() => {
    controller.abort(new RemctlError(`timed out after ${timeoutMs} ms: the call's timeout`, 'ERR_REMCTL_TIMEOUT'));
  }, timeoutMs);
  timer.unref();
  const follow = () => controller.abort(signal!.reason);
  if (signal?.aborted) controller.abort(signal.reason);
  else signal?.addEventListener('abort', follow, { once: true });
  return {
    signal: controller.signal,
    done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', follow);
    },
  };
}
