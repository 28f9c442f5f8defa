// The test realm as a test file sees it: plain settings, provided by global-setup.mjs.
//
// The Realm object itself lives in the main vitest process; to control its daemons from a test,
// pass these settings to the functions of realm-control.mjs.

import { execFile } from 'node:child_process';
import { inject } from 'vitest';

/** @typedef {import('./realm-control.mjs').RealmSettings} RealmSettings */

/**
 * The settings of the realm that global-setup.mjs started, or, outside vitest, of the realm
 * named by REMCTL_TEST_REALM (the JSON that `node test/realm.mjs` prints).
 * @returns {RealmSettings}
 */
export function realm() {
  /** @type {RealmSettings | undefined} */
  let settings;
  try {
    settings = inject('realm');
  } catch {
    // Not inside a vitest worker.
  }
  if (settings) return settings;
  if (process.env.REMCTL_TEST_REALM) return JSON.parse(process.env.REMCTL_TEST_REALM);
  throw new Error(
    'No test realm: run the tests with vitest (vitest.config.mjs starts one in test/global-setup.mjs), ' +
      'or set REMCTL_TEST_REALM to the JSON printed by `node test/realm.mjs`',
  );
}

/**
 * What the C client printed and its exit status.
 * @typedef {object} CClientResult
 * @property {Buffer} stdout
 * @property {string} stderr
 * @property {number | null} status
 * @property {NodeJS.Signals | null} signal
 */

/**
 * Runs Russ Allbery's C client, /usr/bin/remctl, against the realm's remctld, as the reference
 * that the Node client's behaviour can be compared with. Never rejects for a non-zero status.
 * @param {string[]} command the remctl command and its arguments
 * @param {{ settings?: RealmSettings, ccache?: string, port?: number, principal?: string | null }} [options]
 *   principal null leaves out -s, so that the client picks its default, host/<host>
 * @returns {Promise<CClientResult>}
 */
export function runCRemctl(command, options = {}) {
  const { settings = realm(), ccache = settings.ccache, port = settings.port } = options;
  const principal = options.principal === undefined ? settings.principal : options.principal;
  const args = ['-p', String(port), ...(principal === null ? [] : ['-s', principal]), settings.host, ...command];
  const env = { ...process.env, ...settings.env, KRB5CCNAME: ccache };
  return new Promise((resolve, reject) => {
    execFile('remctl', args, { env, encoding: 'buffer', maxBuffer: 512 * 1024 * 1024 }, (error, stdout, stderr) => {
      const exitError = /** @type {(Error & { code?: unknown, signal?: NodeJS.Signals | null }) | null} */ (error);
      if (exitError && typeof exitError.code !== 'number' && !exitError.signal) {
        reject(exitError);
        return;
      }
      resolve({
        stdout,
        stderr: stderr.toString('utf8'),
        status: exitError ? /** @type {number | null} */ (exitError.code ?? null) : 0,
        signal: exitError?.signal ?? null,
      });
    });
  });
}
