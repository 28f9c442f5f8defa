// What a user sees when the package cannot be built or loaded: one sentence that says what to
// install or which Node.js to use. Each failure is produced for real: install.mjs run against an
// include directory without remctl.h, and the loader in a copy of dist/ whose addon is missing or
// is a .node that the dynamic linker refuses.

import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { _internal } from '../dist/addon.js';
import { MISSING_HEADER } from '../scripts/libremctl.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const SUPPORTED = '^20.19.0 || >=22.12.0';
const scratch = mkdtempSync(join(tmpdir(), 'remctl-install-test-'));

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A copy of the built package (dist/ and package.json) with this file, if any, as its addon. */
function packageCopy(name: string, addon?: string): string {
  const dir = join(scratch, name);
  cpSync(join(root, 'dist'), join(dir, 'dist'), { recursive: true });
  cpSync(join(root, 'package.json'), join(dir, 'package.json'));
  if (addon !== undefined) {
    mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
    cpSync(addon, join(dir, 'build', 'Release', 'remctl.node'));
  }
  return dir;
}

/** Imports the copy's index.js in a fresh Node, the way a user's program would. */
function importPackage(dir: string) {
  const script = `await import(${JSON.stringify(new URL('dist/index.js', `file://${dir}/`).href)});`;
  return spawnSync(process.execPath, ['--input-type=module', '--eval', script], { encoding: 'utf8' });
}

/** The first line of an uncaught error as Node prints it: `Error: <message>`. */
function thrownMessage(stderr: string): string | undefined {
  return /^Error: (.*)$/m.exec(stderr)?.[1];
}

/**
 * Compiles a .node that the dynamic linker refuses. `code` is C++; `libs` are linked with
 * --no-as-needed, so each stays a dependency whether or not the code uses it.
 */
function refusedAddon(name: string, code: string, libs: string[] = []): string {
  const source = join(scratch, `${name}.cc`);
  const output = join(scratch, `${name}.node`);
  writeFileSync(source, code);
  execFileSync('g++', ['-shared', '-fPIC', '-o', output, source, '-Wl,--no-as-needed', ...libs]);
  return output;
}

/** A real stand-in for libremctl whose soname, libremctl.so.0, no system provides. */
function absentLibremctl(): string {
  const dir = join(scratch, 'absent-lib');
  mkdirSync(dir, { recursive: true });
  const source = join(dir, 'stub.cc');
  writeFileSync(source, 'extern "C" void *remctl_new(void) { return 0; }\n');
  execFileSync('g++', ['-shared', '-fPIC', '-Wl,-soname,libremctl.so.0', '-o', join(dir, 'libremctl.so'), source]);
  return dir;
}

describe('building without libremctl', () => {
  test('install.mjs without remctl.h stops with exit status 1 and one sentence that names libremctl-dev, before node-gyp runs', () => {
    const empty = mkdtempSync(join(scratch, 'include-'));
    const result = spawnSync(process.execPath, [join(root, 'scripts', 'install.mjs')], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, REMCTL_INCLUDE_DIR: empty },
    });
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(`${MISSING_HEADER}\n`);
    expect(MISSING_HEADER).toContain('apt-get install libremctl-dev');
    expect(MISSING_HEADER.trim().split('\n')).toHaveLength(1);
  });
});

describe('loading', () => {
  test('where libremctl.so is missing, the error names the packages that provide it', () => {
    const lib = absentLibremctl();
    const addon = refusedAddon('needs-libremctl', 'extern "C" void *remctl_new(void);\nvoid *use_it() { return remctl_new(); }\n', [`-L${lib}`, '-lremctl']);

    // The dynamic linker's own error, as process.dlopen raises it.
    let dlopenError: NodeJS.ErrnoException | undefined;
    try {
      process.dlopen({ exports: {} } as NodeJS.Module, addon);
    } catch (error) {
      dlopenError = error as NodeJS.ErrnoException;
    }
    expect(dlopenError?.message).toMatch(/libremctl\.so\.0: cannot open shared object file: No such file or directory/);

    const expected =
      'remctl: cannot load the shared library libremctl: install it (Debian/Ubuntu: apt-get install libremctl1; Fedora/RHEL: dnf install remctl) and try again';
    expect(_internal.explain(dlopenError!)).toBe(expected);
    const result = importPackage(packageCopy('without-libremctl', addon));
    expect(result.status).toBe(1);
    expect(thrownMessage(result.stderr)).toBe(expected);
  });

  test('where the addon was never built, the error says to run npm rebuild remctl', () => {
    const result = importPackage(packageCopy('not-built'));
    expect(result.status).toBe(1);
    expect(thrownMessage(result.stderr)).toBe(
      'remctl: the native addon is not built (build/Release/remctl.node is missing): run `npm rebuild remctl`, which needs libremctl-dev',
    );
  });

  test('an addon that needs a symbol this Node.js lacks is reported with the supported versions', () => {
    const addon = refusedAddon('needs-newer-node', 'extern "C" int napi_symbol_of_a_newer_node;\nint *use_it = &napi_symbol_of_a_newer_node;\n');
    const result = importPackage(packageCopy('newer-node', addon));
    expect(result.status).toBe(1);
    expect(thrownMessage(result.stderr)).toMatch(
      new RegExp(`^remctl: the native addon does not load on Node\\.js ${process.versions.node} \\(supported: \\^20\\.19\\.0 \\|\\| >=22\\.12\\.0\\): .*undefined symbol: napi_symbol_of_a_newer_node$`),
    );
  });
});

describe('supported Node.js versions', () => {
  test('the loader names the same range as package.json engines', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toBe(SUPPORTED);
  });

  test.each(['20.19.0', '20.20.2', '22.12.0', '23.0.0', '24.21.0', '26.0.0'])('Node.js %s is supported', (version) => {
    expect(_internal.nodeIsSupported(version)).toBe(true);
  });

  test.each(['16.20.2', '18.20.8', '20.18.3', '22.11.0'])('Node.js %s is not supported', (version) => {
    expect(_internal.nodeIsSupported(version)).toBe(false);
  });

  // engines leaves out 21 (it has no unflagged require(esm)).
  test('Node.js 21 is not supported, as engines says', () => {
    expect(_internal.nodeIsSupported('21.7.3')).toBe(false);
  });
});
