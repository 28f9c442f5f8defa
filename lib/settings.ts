import { addon, type NativeHandle } from './addon.js';
import { checkOptionalText, checkSourceIp, checkTimeout } from './validate.js';

/** What a connection is opened with: kept per connection, never in the process environment. */
export interface ConnectionSettings {
  /** Seconds of network inactivity before an operation fails; 0 (the default) for none. */
  timeout?: number;
  /** The Kerberos ticket cache to authenticate from, e.g. `FILE:/tmp/krb5cc_app`. */
  ccache?: string;
  /** The local address to connect from. */
  sourceIp?: string;
}

export const SETTING_NAMES = ['timeout', 'ccache', 'sourceIp'] as const;

export function checkSettings(values: Record<string, unknown>): ConnectionSettings {
  const settings: ConnectionSettings = {};
  if (values.timeout !== undefined) settings.timeout = checkTimeout(values.timeout);
  const ccache = checkOptionalText(values.ccache, 'ccache');
  if (ccache !== undefined) settings.ccache = ccache;
  if (values.sourceIp !== undefined && values.sourceIp !== null) settings.sourceIp = checkSourceIp(values.sourceIp);
  return settings;
}

/** A native handle with these settings applied. */
export function newHandle(settings: ConnectionSettings): NativeHandle {
  const handle = new addon.RemctlHandle();
  if (settings.timeout) handle.setTimeout(settings.timeout);
  if (settings.ccache !== undefined) handle.setCcache(settings.ccache);
  if (settings.sourceIp !== undefined) handle.setSourceIp(settings.sourceIp);
  return handle;
}
