// The benchmark's servers, kept up for profiling by hand: the realm, its
// stock remctld and the tuned one, and the C reference client built. Prints
// the settings as JSON (including the environment a client needs) and
// stays up until Ctrl-C. For example:
//
//   node bench/serve.mjs > /tmp/bench.json &
//   env $(jq -r '.env | to_entries[] | "\(.key)=\(.value)"' /tmp/bench.json) \
//     perf record -g node --perf-basic-prof bench/node-client.mjs \
//     "$(jq -c '{mode:"session",host,principal,port:.ports.tuned,count:2000,command:["test","test"]}' /tmp/bench.json)"
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRealm } from '../test/realm.mjs';
import { buildC, startTunedRemctld } from './servers.mjs';

const work = mkdtempSync(join(tmpdir(), 'remctl-bench-'));
const binaries = buildC(work);
const realm = await startRealm();
try {
  Object.assign(process.env, realm.env);
  const tuned = await startTunedRemctld(realm, binaries.shim);
  const settings = {
    host: realm.host,
    principal: realm.principal,
    ports: { tuned: tuned.port, stock: realm.port },
    env: realm.env,
    reference: binaries.reference,
    dir: realm.dir,
  };
  process.stdout.write(`${JSON.stringify(settings, null, 2)}\n`);
  process.stderr.write('bench servers are up; stop them with Ctrl-C.\n');
  const keepAlive = setInterval(() => {}, 60_000);
  await new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  clearInterval(keepAlive);
} finally {
  await realm.stop();
  rmSync(work, { recursive: true, force: true });
}
