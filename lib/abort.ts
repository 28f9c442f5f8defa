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

// What the native side gets before the deadline below: its own timeout on
// the server's socket fires within 100 ms of the timeout and says more.
const DEADLINE_GRACE_MS = 500;

/**
 * An open that has not settled within its timeout (and a little grace) is
 * given up: `onExpire` interrupts it and the result rejects. This bounds what
 * the socket's inactivity timeout cannot see, a KDC that does not answer
 * libkrb5; the thread opening it finishes in the background.
 */
export function openDeadline<T>(promise: Promise<T>, seconds: number | undefined, onExpire: () => void): Promise<T> {
  if (!seconds) return promise;
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onExpire();
      reject(new RemctlError(`timed out after ${seconds} s opening the connection: no answer from the KDC or from the server while authenticating`, 'ERR_REMCTL_TIMEOUT'));
    }, seconds * 1000 + DEADLINE_GRACE_MS);
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
