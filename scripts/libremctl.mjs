// Finds libremctl's header and library for the build: pkg-config where it
// knows libremctl, else the usual prefixes. REMCTL_INCLUDE_DIR and
// REMCTL_LIB_DIR override both. Run with --cflags or --libs, node-gyp reads
// the answer (include directories, then linker flags).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const DEFAULT_INCLUDE_DIRS = ['/usr/include', '/usr/local/include'];

function pkgConfig(flag) {
  try {
    return execFileSync('pkg-config', [flag, 'libremctl'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return null;
  }
}

/** @returns {{ includeDirs: string[], libs: string[], header: string | null }} */
export function findLibremctl(env = process.env) {
  let includeDirs;
  let libs;
  if (env.REMCTL_INCLUDE_DIR) {
    includeDirs = [env.REMCTL_INCLUDE_DIR];
  } else {
    const cflags = pkgConfig('--cflags-only-I');
    includeDirs = cflags === null ? DEFAULT_INCLUDE_DIRS : [
      ...cflags.split(/\s+/).filter(Boolean).map((flag) => flag.replace(/^-I/, '')),
      ...DEFAULT_INCLUDE_DIRS,
    ];
  }
  if (env.REMCTL_LIB_DIR) {
    libs = [`-L${env.REMCTL_LIB_DIR}`, '-lremctl'];
  } else {
    const flags = pkgConfig('--libs');
    libs = flags ? flags.split(/\s+/).filter(Boolean) : ['-lremctl'];
  }
  const header = includeDirs.map((dir) => join(dir, 'remctl.h')).find((path) => existsSync(path)) ?? null;
  return { includeDirs, libs, header };
}

export const MISSING_HEADER =
  'remctl: cannot build: remctl.h was not found; install libremctl\'s development files ' +
  '(Debian/Ubuntu: apt-get install libremctl-dev; Fedora/RHEL: dnf install remctl-devel) and try again.';

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const found = findLibremctl();
  if (process.argv[2] === '--cflags') console.log(found.includeDirs.join(' '));
  else if (process.argv[2] === '--libs') console.log(found.libs.join(' '));
  else console.log(JSON.stringify(found));
}
