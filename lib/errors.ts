/** Error codes of the remctl protocol, as the server sends them in an error token. */
export const ERROR_INTERNAL = 1;
export const ERROR_BAD_TOKEN = 2;
export const ERROR_UNKNOWN_MESSAGE = 3;
export const ERROR_BAD_COMMAND = 4;
export const ERROR_UNKNOWN_COMMAND = 5;
export const ERROR_ACCESS = 6;
export const ERROR_TOOMANY_ARGS = 7;
export const ERROR_TOOMUCH_DATA = 8;
export const ERROR_UNEXPECTED_MESSAGE = 9;
/** Sent by remctld for `help` of a command that has none; the protocol text omits it. */
export const ERROR_NO_HELP = 10;

const ERROR_NAMES: Readonly<Record<number, string>> = {
  [ERROR_INTERNAL]: 'ERROR_INTERNAL',
  [ERROR_BAD_TOKEN]: 'ERROR_BAD_TOKEN',
  [ERROR_UNKNOWN_MESSAGE]: 'ERROR_UNKNOWN_MESSAGE',
  [ERROR_BAD_COMMAND]: 'ERROR_BAD_COMMAND',
  [ERROR_UNKNOWN_COMMAND]: 'ERROR_UNKNOWN_COMMAND',
  [ERROR_ACCESS]: 'ERROR_ACCESS',
  [ERROR_TOOMANY_ARGS]: 'ERROR_TOOMANY_ARGS',
  [ERROR_TOOMUCH_DATA]: 'ERROR_TOOMUCH_DATA',
  [ERROR_UNEXPECTED_MESSAGE]: 'ERROR_UNEXPECTED_MESSAGE',
  [ERROR_NO_HELP]: 'ERROR_NO_HELP',
};

/** The name Node-style code for a protocol error number: `ERROR_ACCESS` for 6, `ERROR_n` if unknown. */
export function errorCodeName(errorCode: number): string {
  return ERROR_NAMES[errorCode] ?? `ERROR_${errorCode}`;
}

/**
 * The `code` of every error a call rejects with, but RemctlProtocolError's
 * (the server's own code, `ERROR_ACCESS`...) and an abort's (the signal's reason).
 */
export type RemctlErrorCode =
  | 'ERR_REMCTL_CONNECT'
  | 'ERR_REMCTL_AUTH'
  | 'ERR_REMCTL_TIMEOUT'
  | 'ERR_REMCTL_CONNECTION_LOST'
  | 'ERR_REMCTL_BAD_RESPONSE'
  | 'ERR_REMCTL_NOT_OPEN'
  | 'ERR_REMCTL_OUTPUT_PENDING'
  | 'ERR_REMCTL_POOL_CLOSED'
  | 'ERR_REMCTL_MAXBUFFER'
  | 'ERR_REMCTL_CANCELLED'
  | 'ERR_REMCTL_UNSUPPORTED'
  | 'ERR_REMCTL_SYSTEM';

/** A network, authentication or library failure; the message is libremctl's text. */
export class RemctlError extends Error {
  /** What kind of failure: see RemctlErrorCode, and RemctlProtocolError for the server's codes. */
  readonly code: string;

  constructor(message: string, code: RemctlErrorCode | (string & {}), options?: ErrorOptions) {
    super(message, options);
    this.name = 'RemctlError';
    this.code = code;
  }
}

/** The server answered with an error token. */
export class RemctlProtocolError extends RemctlError {
  /** The protocol's numeric error code (the token's `error` field). */
  readonly errorCode: number;
  /** Its name: `'ERROR_UNKNOWN_COMMAND'` for 5, `'ERROR_ACCESS'` for 6, `'ERROR_n'` if unknown. */
  declare readonly code: string;

  constructor(message: string, errorCode: number) {
    super(message, errorCodeName(errorCode));
    this.name = 'RemctlProtocolError';
    this.errorCode = errorCode;
  }
}

/** A call that needs an open connection was made on one that is not open. */
export class RemctlNotOpenedError extends RemctlError {
  declare readonly code: 'ERR_REMCTL_NOT_OPEN';

  constructor(message = 'no currently open connection') {
    super(message, 'ERR_REMCTL_NOT_OPEN');
    this.name = 'RemctlNotOpenedError';
  }
}

/**
 * A call that sends something was made while the output of a command sent
 * with command() has not been read to its end: read the rest with output()
 * or outputs() first. The connection is unharmed.
 */
export class RemctlOutputPendingError extends RemctlError {
  declare readonly code: 'ERR_REMCTL_OUTPUT_PENDING';

  constructor(call: string) {
    super(`cannot ${call} while the output of the last command is still to be read: read it to its end with output() or outputs() first`, 'ERR_REMCTL_OUTPUT_PENDING');
    this.name = 'RemctlOutputPendingError';
  }
}
