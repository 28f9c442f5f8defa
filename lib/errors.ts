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

/** A network, authentication or library failure; the message is libremctl's text. */
export class RemctlError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RemctlError';
  }
}

/** The server answered with an error token. */
export class RemctlProtocolError extends RemctlError {
  /** The protocol's numeric error code (the token's `error` field). */
  readonly errorCode: number;
  /** Its name: `'ERROR_UNKNOWN_COMMAND'` for 5, `'ERROR_ACCESS'` for 6, `'ERROR_n'` if unknown. */
  readonly code: string;

  constructor(message: string, errorCode: number) {
    super(message);
    this.name = 'RemctlProtocolError';
    this.errorCode = errorCode;
    this.code = errorCodeName(errorCode);
  }
}

/** A call that needs an open connection was made on one that is not open. */
export class RemctlNotOpenedError extends RemctlError {
  constructor() {
    super('no currently open connection');
    this.name = 'RemctlNotOpenedError';
  }
}

/**
 * A call that sends something was made while the output of a command sent
 * with command() has not been read to its end: read the rest with output()
 * or outputs() first. The connection is unharmed.
 */
export class RemctlOutputPendingError extends RemctlError {
  readonly code = 'ERR_REMCTL_OUTPUT_PENDING';

  constructor(call: string) {
    super(`cannot ${call} while the output of the last command is still to be read: read it to its end with output() or outputs() first`);
    this.name = 'RemctlOutputPendingError';
  }
}
