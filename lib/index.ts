export * as _remctl from './_remctl.js';
export type { RemctlOutput, RemctlResult } from './output.js';
export * from './errors.js';
