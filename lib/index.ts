export * as _remctl from './_remctl.js';
export { remctl, type RemctlOptions } from './simple.js';
export { Remctl, type CallOptions, type ConnectOptions, type OpenOptions, type RunOptions } from './connection.js';
export type { ConnectionSettings } from './settings.js';
export type { RemctlOutput, RemctlResult } from './output.js';
export { DEFAULT_MAX_BUFFER, MaxBufferError } from './result.js';
export * from './errors.js';
