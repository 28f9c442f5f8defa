// Everything `npm test`, `npm run demo` and `npm run bench` need on a fresh
// Debian or Ubuntu machine: the system packages (installed with apt-get when
// we are root, else the exact command is printed), the npm dependencies,
// and the build. Each step is skipped when it is already done.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Debian packages: libremctl to build against, the KDC and remctld for the throwaway realm, the C client to compare with. */
export const DEBIAN_PACKAGES = [
  'libremctl-dev',
  'remctl-client',
  'remctl-server',
  'krb5-kdc',
  'krb5-admin-server',
  'krb5-user',
  'pkg-config',
  'make',
  'g++',
  'python3',
];

function missingPackages() {
  return DEBIAN_PACKAGES.filter((name) => {
    const result = spawnSync('dpkg-query', ['-W', '-f=${Status}', name], { encoding: 'utf8' });
    return result.status !== 0 || !result.stdout.includes('install ok installed');
  });
}

function run(command, args, options = {}) {
  console.log(`setup: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { stdio: 'inherit', cwd: root, ...options });
  if (result.status !== 0) {
    console.error(`setup: ${command} failed (${result.error?.message ?? `exit ${result.status}`})`);
    process.exit(1);
  }
}

function newestMtime(paths) {
  let newest = 0;
  for (const path of paths) {
    if (!existsSync(path)) continue;
    const stat = statSync(path);
    if (stat.isDirectory()) {
      newest = Math.max(newest, newestMtime(readdirSync(path).map((name) => join(path, name))));
    } else {
      newest = Math.max(newest, stat.mtimeMs);
    }
  }
  return newest;
}

function isStale(output, inputs) {
  return !existsSync(output) || statSync(output).mtimeMs < newestMtime(inputs);
}

function installSystemPackages() {
  if (!existsSync('/usr/bin/dpkg-query')) {
    console.log('setup: not a Debian-like system; make sure libremctl (headers included), an MIT KDC and remctld are installed');
    return;
  }
  const missing = missingPackages();
  if (missing.length === 0) return;
  const line = `apt-get update && apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  if (process.getuid?.() !== 0) {
    console.error(`setup: missing Debian packages: ${missing.join(' ')}\nsetup: run as root:\n  sudo sh -c '${line}'`);
    process.exit(1);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update'], { env });
  run('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { env });
}

function installNodeModules() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  if (!isStale(marker, [join(root, 'package-lock.json')])) return;
  // npm ci also builds the addon (the package's install script).
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

function build() {
  const addon = join(root, 'build', 'Release', 'remctl.node');
  if (isStale(addon, [join(root, 'native'), join(root, 'binding.gyp')])) {
    run('npx', ['--no-install', 'node-gyp', 'rebuild']);
  }
  if (isStale(join(root, 'dist', 'index.js'), [join(root, 'lib'), join(root, 'tsconfig.json')])) {
    run('npx', ['--no-install', 'tsc', '-p', 'tsconfig.json']);
  }
}

installSystemPackages();
installNodeModules();
build();
try {
  execFileSync('pkg-config', ['--exists', 'libremctl']);
} catch {
  // Only informative: the build also finds libremctl without pkg-config.
}
