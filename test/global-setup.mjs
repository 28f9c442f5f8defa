// vitest globalSetup: one realm for the whole test run, started in the main vitest process.
//
// Test workers are forked from this process after setup() returns, so they inherit the
// Kerberos variables set here: the client's ticket cache is the default one in every test.
// Tests read the realm's settings through realm() in realm-context.mjs.

import { startRealm } from './realm.mjs';

/** @param {import('vitest/node').TestProject} project */
export async function setup(project) {
  const realm = await startRealm();
  const variables = { ...realm.env, REMCTL_TEST_REALM: JSON.stringify(realm.settings) };
  const previous = Object.fromEntries(Object.keys(variables).map((name) => [name, process.env[name]]));
  Object.assign(process.env, variables);
  project.provide('realm', realm.settings);

  return async () => {
    await realm.stop();
    for (const [name, value] of Object.entries(previous)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
}
