// The operations the leak test (test/leaks.test.ts) and the soak (scripts/soak.mjs) repeat:
// every way there is to run a command, each checking what came back, so that a leak on any
// path (small outputs copied, large ones handed over as external Buffers, streams, tokens,
// protocol errors, maxBuffer, aborts, refused connections, the synchronous call) adds up.

import { bigPattern } from './realm.mjs';

/** Above the 64 KiB under which the addon copies output instead of handing its buffer over. */
const LARGE = 70_000;
const LARGE_OUTPUT = bigPattern(LARGE);

/** @param {unknown} condition @param {string} what */
function check(condition, what) {
  if (!condition) throw new Error(`leak workload: ${what}`);
}

/** @param {import('node:stream').Readable} stream */
async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** @param {Promise<unknown>} promise @param {(error: any) => boolean} expected @param {string} what */
async function rejects(promise, expected, what) {
  try {
    await promise;
  } catch (error) {
    check(expected(error), `${what}: unexpected ${error?.name}: ${error?.message}`);
    return;
  }
  check(false, `${what} resolved`);
}

/**
 * The i-th command over one open connection; every kind in turn, all on that connection.
 * @param {typeof import('../dist/index.js')} lib
 * @param {import('../dist/index.js').Remctl} connection
 * @param {number} i
 */
export async function commandOnConnection(lib, connection, i) {
  switch (i % 6) {
    case 0: {
      const { stdout } = await connection.run(['test', 'test'], { encoding: 'utf8' });
      check(stdout === 'hello world\n', 'run test test');
      break;
    }
    case 1: {
      const data = Buffer.from([i & 0xff, 0, 0xff, (i >> 8) & 0xff]);
      const { stdout } = await connection.run(['test', 'stdin', data]);
      check(stdout.equals(data), 'run test stdin');
      break;
    }
    case 2: {
      const { stdout } = await connection.run(['test', 'big', String(LARGE)]);
      check(stdout.equals(LARGE_OUTPUT), 'run test big');
      break;
    }
    case 3: {
      const child = connection.spawn(['test', 'echo', `spawn ${i}`]);
      const [stdout, stderr, status] = await Promise.all([collect(child.stdout), collect(child.stderr), child.status]);
      check(stdout.toString() === `spawn ${i}\n` && stderr.toString() === 'stderr line\n' && status === 0, 'spawn test echo');
      break;
    }
    case 4: {
      await connection.command(['test', 'status', String(i % 256)]);
      let last;
      for await (const token of connection.outputs()) last = token;
      check(last?.type === 'status' && last.status === i % 256, 'command and outputs');
      break;
    }
    default: {
      await connection.noop();
      await rejects(connection.run(['no-such-command', String(i)]), (error) => error instanceof lib.RemctlProtocolError, 'unknown command');
    }
  }
}

/**
 * The i-th one-shot call: a connection of its own, opened and closed, whichever way.
 * @param {typeof import('../dist/index.js')} lib
 * @param {{ host: string, port: number, principal: string }} realm
 * @param {number} closedPort
 * @param {number} i
 */
export async function oneShot(lib, realm, closedPort, i) {
  const where = { port: realm.port, principal: realm.principal };
  switch (i % 10) {
    case 0: {
      const { stdout } = await lib.remctl(realm.host, ['test', 'test'], { ...where, encoding: 'utf8' });
      check(stdout === 'hello world\n', 'remctl()');
      break;
    }
    case 1: {
      const child = lib.spawn(realm.host, ['test', 'big', String(LARGE)], where);
      const [stdout, , status] = await Promise.all([collect(child.stdout), collect(child.stderr), child.status]);
      check(stdout.equals(LARGE_OUTPUT) && status === 0, 'spawn()');
      break;
    }
    case 2: {
      const result = await lib._remctl.remctl(realm.host, realm.port, realm.principal, ['test', 'status', '3']);
      check(result.error === null && result.status === 3, '_remctl.remctl()');
      break;
    }
    case 3:
      await rejects(lib.remctl(realm.host, ['test', 'big', '1000'], { ...where, maxBuffer: 10 }), (error) => error instanceof lib.MaxBufferError, 'maxBuffer');
      break;
    case 4:
      await rejects(lib.remctl(realm.host, ['no-such-command'], where), (error) => error instanceof lib.RemctlProtocolError, 'unknown command');
      break;
    case 5:
      await rejects(lib.remctl(realm.host, ['test', 'test'], { ...where, port: closedPort }), (error) => error instanceof lib.RemctlError, 'closed port');
      break;
    case 6: {
      const controller = new AbortController();
      const call = lib.remctl(realm.host, ['test', 'sleep', '1'], { ...where, signal: controller.signal });
      setTimeout(() => controller.abort(), 5);
      await rejects(call, (error) => error === controller.signal.reason, 'abort');
      break;
    }
    case 7: {
      const connection = await lib.Remctl.connect(realm.host, where);
      const { stdout } = await connection.run(['test', 'echo', `connect ${i}`], { encoding: 'utf8' });
      await connection.close();
      check(stdout === `connect ${i}\n`, 'Remctl.connect');
      break;
    }
    case 8: {
      const r = lib._remctl.remctl_new();
      check(await lib._remctl.remctl_open(r, realm.host, realm.port, realm.principal), 'remctl_open');
      check(await lib._remctl.remctl_commandv(r, ['test', 'test']), 'remctl_commandv');
      let token;
      do token = await lib._remctl.remctl_output(r);
      while (token?.type === 'output');
      check(token?.type === 'status', 'remctl_output');
      await lib._remctl.remctl_close(r);
      break;
    }
    default: {
      const { stdout } = lib.remctlSync(realm.host, ['test', 'test'], { ...where, encoding: 'utf8' });
      check(stdout === 'hello world\n', 'remctlSync()');
    }
  }
}
