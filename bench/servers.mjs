// The two servers of the benchmarks and the C programs they need: the
// realm's own remctld is the stock server; a second remctld of the realm,
// with tuned-remctld.so preloaded, is the tuned one.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** Compiles the C reference client and the tuned server's shim into `dir`. */
export function buildC(dir) {
  let flags = { cflags: [], libs: ['-lremctl'] };
  try {
    const cflags = execFileSync('pkg-config', ['--cflags', 'libremctl'], { encoding: 'utf8' }).trim();
    const libs = execFileSync('pkg-config', ['--libs', 'libremctl'], { encoding: 'utf8' }).trim();
    flags = { cflags: cflags ? cflags.split(/\s+/) : [], libs: libs.split(/\s+/) };
  } catch {
    // libremctl without a .pc file: the plain flags above.
  }
  const reference = join(dir, 'reference');
  const shim = join(dir, 'tuned-remctld.so');
  execFileSync('cc', ['-O2', '-Wall', ...flags.cflags, '-o', reference, join(here, 'c', 'reference.c'), ...flags.libs, '-lpthread']);
  execFileSync('cc', ['-O2', '-Wall', '-shared', '-fPIC', '-o', shim, join(here, 'c', 'tuned-remctld.c'), '-ldl']);
  return { reference, shim };
}

/** The listen backlog of the socket on a port, from `ss` (its Send-Q column), if `ss` is there. */
export function listenBacklog(port) {
  try {
    const out = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' });
    const fields = out.trim().split(/\s+/);
    return Number(fields[2]) || undefined;
  } catch {
    return undefined;
  }
}

/** A remctld on another port of the realm, with the shim preloaded. */
export async function startTunedRemctld(realm, shim) {
  // startExtraRemctld passes this process's environment to the daemon; the
  // shim removes LD_PRELOAD from remctld's own environment once loaded, so
  // the commands remctld runs do not load it.
  process.env.LD_PRELOAD = shim;
  let server;
  try {
    server = await realm.startExtraRemctld({ principal: realm.principal, keytab: realm.serviceKeytab });
  } finally {
    delete process.env.LD_PRELOAD;
  }
  const logText = readFileSync(server.logFile, 'utf8');
  if (!logText.includes('tuned-remctld:')) {
    throw new Error(`the tuned remctld on port ${server.port} did not load ${shim}:\n${logText}`);
  }
  return server;
}
