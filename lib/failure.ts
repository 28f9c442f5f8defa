// What a native failure amounts to in JavaScript: the error with its code,
// and the system error under it as its cause.
import { getSystemErrorName } from 'node:util';
import type { NativeFailure } from './addon.js';
import { RemctlError, RemctlNotOpenedError, type RemctlErrorCode } from './errors.js';

const CODES: Readonly<Record<NativeFailure['reason'], RemctlErrorCode>> = {
  connect: 'ERR_REMCTL_CONNECT',
  auth: 'ERR_REMCTL_AUTH',
  timeout: 'ERR_REMCTL_TIMEOUT',
  connectionLost: 'ERR_REMCTL_CONNECTION_LOST',
  badResponse: 'ERR_REMCTL_BAD_RESPONSE',
  notOpen: 'ERR_REMCTL_NOT_OPEN',
  cancelled: 'ERR_REMCTL_CANCELLED',
  unsupported: 'ERR_REMCTL_UNSUPPORTED',
  system: 'ERR_REMCTL_SYSTEM',
};

/** The system error under a failure, as Node makes one: `connect ECONNREFUSED 127.0.0.1:4373`. */
function systemError(failure: NativeFailure): NodeJS.ErrnoException {
  const code = failure.code ?? (failure.errno ? getSystemErrorName(-failure.errno) : 'UNKNOWN');
  const resolving = failure.syscall === 'getaddrinfo';
  const where = failure.address === undefined ? '' : failure.port ? ` ${failure.address}:${failure.port}` : ` ${failure.address}`;
  const error: NodeJS.ErrnoException & { address?: string; port?: number; hostname?: string } = new Error(`${failure.syscall} ${code}${where}`);
  error.code = code;
  if (failure.errno) error.errno = -failure.errno;
  error.syscall = failure.syscall!;
  if (resolving) {
    if (failure.address !== undefined) error.hostname = failure.address;
  } else {
    if (failure.address !== undefined) error.address = failure.address;
    if (failure.port) error.port = failure.port;
  }
  return error;
}

/** The error a native failure amounts to, with its code and, where one is known, the system error as cause. */
export function failureError(failure: NativeFailure): RemctlError {
  const code = CODES[failure.reason] ?? 'ERR_REMCTL_SYSTEM';
  if (code === 'ERR_REMCTL_NOT_OPEN') return new RemctlNotOpenedError(failure.message);
  const options = failure.syscall === undefined ? undefined : { cause: systemError(failure) };
  return new RemctlError(failure.message, code, options);
}


