import { addon, type NativeHandle } from './addon.js';
import { checkMilliseconds, checkOptionalText, checkSourceIp } from './validate.js';

/** What a connection is opened with: kept per connection, never in the process environment. */
export interface ConnectionSettings {
  /**
   * Milliseconds the server may stay silent (network inactivity, what
   * libremctl calls its timeout) before the call waiting on it fails with
   * ERR_REMCTL_TIMEOUT; 0 (the default) for none.
   */
  idleTimeout?: number;
  /**
   * Milliseconds that connecting and authenticating may take, a KDC that
   * never answers included, before the open fails with ERR_REMCTL_TIMEOUT.
   * Default 30 000; 0 for none.
   */
  connectTimeout?: number;
  /** The Kerberos ticket cache to authenticate from, e.g. `FILE:/tmp/krb5cc_app`. */
  ccache?: string;
  /** The local address to connect from. */
  sourceIp?: string;
  /**
   * How many more times to try when the server drops the connection before
   * authentication completes (as a busy remctld does: its listen backlog is 5).
   * Nothing has been sent then, so this is safe. Default 3.
   */
  openRetries?: number;
  /** Milliseconds before the first retry, doubled for each next one, plus up to half again of jitter. Default 50. */
  openRetryDelay?: number;
}

export const SETTING_NAMES = ['idleTimeout', 'connectTimeout', 'ccache', 'sourceIp', 'openRetries', 'openRetryDelay'] as const;

export const DEFAULT_CONNECT_TIMEOUT = 30_000;

function checkWhole(value: unknown, name: string, max: number): number {
  if (typeof value !== 'number' || Number.isNaN(value)) throw new TypeError(`${name} must be a number, got ${typeof value}`);
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`${name} must be a whole number from 0 to ${max}, got ${value}`);
  }
  return value;
}

export const DEFAULT_OPEN_RETRIES = 3;
export const DEFAULT_OPEN_RETRY_DELAY = 50;

export function checkSettings(values: Record<string, unknown>): ConnectionSettings {
  const settings: ConnectionSettings = {};
  if (values.idleTimeout !== undefined) settings.idleTimeout = checkMilliseconds(values.idleTimeout, 'idleTimeout');
  if (values.connectTimeout !== undefined) settings.connectTimeout = checkMilliseconds(values.connectTimeout, 'connectTimeout');
  const ccache = checkOptionalText(values.ccache, 'ccache');
  if (ccache !== undefined) settings.ccache = ccache;
  if (values.sourceIp !== undefined && values.sourceIp !== null) settings.sourceIp = checkSourceIp(values.sourceIp);
  if (values.openRetries !== undefined) settings.openRetries = checkWhole(values.openRetries, 'openRetries', 100);
  if (values.openRetryDelay !== undefined) settings.openRetryDelay = checkWhole(values.openRetryDelay, 'openRetryDelay', 60_000);
  return settings;
}

/** A native handle with these settings applied. */
export function newHandle(settings: ConnectionSettings): NativeHandle {
  const handle = new addon.RemctlHandle();
  if (settings.idleTimeout) handle.setIdleTimeout(settings.idleTimeout);
  handle.setConnectTimeout(connectTimeoutOf(settings));
  if (settings.ccache !== undefined) handle.setCcache(settings.ccache);
  if (settings.sourceIp !== undefined) handle.setSourceIp(settings.sourceIp);
  if (settings.openRetries !== undefined || settings.openRetryDelay !== undefined) {
    handle.setOpenRetries(settings.openRetries ?? DEFAULT_OPEN_RETRIES, settings.openRetryDelay ?? DEFAULT_OPEN_RETRY_DELAY);
  }
  return handle;
}

/** The connect timeout in force: the setting, or the default. */
export function connectTimeoutOf(settings: ConnectionSettings): number {
  return settings.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT;
}
