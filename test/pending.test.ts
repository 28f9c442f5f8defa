// One command's output never reaches another command's caller. A Remctl knows when the output of
// a command sent with command() is still to be read: calls that would send something refuse at
// once, and leaving outputs() early reads and drops the rest before the next call runs. The
// _remctl layer keeps the C library's semantics: no such check.

import { afterEach, describe, expect, test } from 'vitest';
import { Remctl, RemctlError, RemctlOutputPendingError, _remctl, type RemctlOutput } from '../dist/index.js';
import { rejection } from './probes.js';
import { bigPattern } from './realm.mjs';
import { realm } from './realm-context.mjs';

const settings = realm();
const { host } = settings;
const server = { port: settings.port, principal: settings.principal };

const connections = new Set<Remctl>();
async function connect(options: { idleTimeout?: number } = {}): Promise<Remctl> {
  const r = await Remctl.connect(host, { ...server, ...options });
  connections.add(r);
  return r;
}
afterEach(async () => {
  await Promise.all([...connections].map((r) => r.close()));
  connections.clear();
});

function readable(token: RemctlOutput) {
  return 'data' in token ? { ...token, data: token.data.toString() } : token;
}

async function echo(r: Remctl, word: string) {
  return r.run(['test', 'echo', word], { encoding: 'utf8' });
}

const own = (word: string) => ({ stdout: `${word}\n`, stderr: 'stderr line\n', status: 0 });

describe('output still to be read', () => {
  test('command() then run() rejects the run at once with RemctlOutputPendingError; the output stays readable and the next run gets its own', async () => {
    const r = await connect();
    await r.command(['test', 'echo', 'FIRST']);
    const { error } = await rejection(echo(r, 'SECOND'));
    expect(error).toBeInstanceOf(RemctlOutputPendingError);
    expect(error).toBeInstanceOf(RemctlError);
    expect(error).toMatchObject({
      code: 'ERR_REMCTL_OUTPUT_PENDING',
      message:
        'cannot run a command while the output of the last command is still to be read: read it to its end with output() or outputs() first',
    });
    expect(r.opened).toBe(true);
    const tokens: RemctlOutput[] = [];
    for await (const token of r.outputs()) tokens.push(token);
    expect(tokens.map(readable)).toEqual([
      { type: 'output', data: 'FIRST\n', stream: 1 },
      { type: 'output', data: 'stderr line\n', stream: 2 },
      { type: 'status', status: 0 },
    ]);
    expect(await echo(r, 'SECOND')).toEqual(own('SECOND'));
    expect(await echo(r, 'THIRD')).toEqual(own('THIRD'));
  });

  test('command() then noop(), command() or spawn() is refused the same way, and output() still reads the first command to its end', async () => {
    const r = await connect();
    await r.command(['test', 'echo', 'FIRST']);
    await expect(r.noop()).rejects.toThrow(RemctlOutputPendingError);
    await expect(r.command(['test', 'echo', 'SECOND'])).rejects.toThrow(
      'cannot send a command while the output of the last command is still to be read',
    );
    const child = r.spawn(['test', 'echo', 'SECOND']);
    child.stdout.resume();
    await expect(child.status).rejects.toThrow(RemctlOutputPendingError);
    const first: RemctlOutput[] = [];
    for (;;) {
      const token = await r.output();
      first.push(token);
      if (token.type !== 'output') break;
    }
    expect(first.map(readable).at(0)).toEqual({ type: 'output', data: 'FIRST\n', stream: 1 });
    expect(first.at(-1)).toEqual({ type: 'status', status: 0 });
    await r.noop();
    expect(await echo(r, 'SECOND')).toEqual(own('SECOND'));
  });

  test('a run() queued behind a command() that is not read is refused when its turn comes, not run one command behind', async () => {
    const r = await connect();
    const sent = r.command(['test', 'echo', 'FIRST']);
    const queued = echo(r, 'SECOND');
    await sent;
    await expect(queued).rejects.toThrow(RemctlOutputPendingError);
    const rest: string[] = [];
    for await (const token of r.outputs()) if (token.type === 'output') rest.push(token.data.toString());
    expect(rest).toEqual(['FIRST\n', 'stderr line\n']);
    expect(await echo(r, 'THIRD')).toEqual(own('THIRD'));
  });

  test('outputs() takes whatever has arrived in one go, yet output() and outputs() interleaved hand out every token once and in order', async () => {
    const r = await connect();
    const size = 300_000;
    await r.command(['test', 'big', String(size)]);
    // Let the whole output arrive, so that the first outputs() step reads several tokens ahead.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const iterator = r.outputs();
    const chunks: Buffer[] = [];
    const taken = (token: RemctlOutput) => {
      if (token.type === 'output') chunks.push(token.data);
      return token.type;
    };
    let kinds = [taken((await iterator.next()).value as RemctlOutput)];
    for (let i = 0; i < 3; i++) kinds.push(taken(await r.output()));
    for (;;) {
      const step = await iterator.next();
      if (step.done) break;
      kinds.push(taken(step.value));
    }
    expect(kinds.at(-1)).toBe('status');
    expect(kinds.slice(0, -1).every((kind) => kind === 'output')).toBe(true);
    expect(kinds.length).toBeGreaterThan(5);
    expect(Buffer.concat(chunks).equals(bigPattern(size))).toBe(true);
    expect(await echo(r, 'NEXT')).toEqual(own('NEXT'));
  });

  for (const how of ['break', 'return', 'throw'] as const) {
    test(`leaving outputs() with ${how} after the first token drops the rest of that output: the next commands get exactly their own`, async () => {
      const r = await connect();
      for (let round = 0; round < 3; round++) {
        await r.command(['test', 'big', '300000']);
        const seen: RemctlOutput[] = [];
        const loop = async () => {
          for await (const token of r.outputs()) {
            seen.push(token);
            if (how === 'break') break;
            if (how === 'return') return 'returned';
            throw new Error('thrown in the loop body');
          }
          return 'ended';
        };
        if (how === 'throw') await expect(loop()).rejects.toThrow('thrown in the loop body');
        else expect(await loop()).toBe(how === 'break' ? 'ended' : 'returned');
        expect(seen.length).toBe(1);
        expect(seen[0]!.type).toBe('output');
        // Nothing of the big output is left for anyone.
        expect(await echo(r, `after-${how}-${round}`)).toEqual(own(`after-${how}-${round}`));
        await r.command(['test', 'echo', `next-${round}`]);
        const next: string[] = [];
        for await (const token of r.outputs()) next.push(token.type === 'output' ? token.data.toString() : token.type);
        expect(next).toEqual([`next-${round}\n`, 'stderr line\n', 'status']);
      }
    });
  }

  test('leaving outputs() early while the rest is slow to come closes the connection after the timeout, and the next call reopens it', async () => {
    const r = await connect({ idleTimeout: 1000 });
    // "first", then two seconds of silence before "second": more than the timeout.
    await r.command(['test', 'lines']);
    for await (const token of r.outputs()) {
      expect(readable(token)).toEqual({ type: 'output', data: 'first\n', stream: 1 });
      break;
    }
    // The second line never reaches the next command.
    expect(await echo(r, 'after')).toEqual(own('after'));
    expect(r.opened).toBe(true);
  });

  test('a run() after an output() that read the status token is not refused', async () => {
    const r = await connect();
    await r.command(['test', 'status', '3']);
    let token: RemctlOutput;
    do token = await r.output();
    while (token.type === 'output');
    expect(token).toEqual({ type: 'status', status: 3 });
    expect(await echo(r, 'fine')).toEqual(own('fine'));
  });

  test('an error token also ends the output: the next command is fine', async () => {
    const r = await connect();
    await r.command(['test', 'bogus']);
    const token = await r.output();
    expect(token.type).toBe('error');
    expect(await echo(r, 'fine')).toEqual(own('fine'));
  });

  test('the _remctl layer keeps the C semantics: a second command while output is pending is sent, and its reads are the first command\'s', async () => {
    const r = _remctl.remctl_new();
    try {
      expect(await _remctl.remctl_open(r, host, settings.port, settings.principal)).toBe(true);
      expect(await _remctl.remctl_commandv(r, ['test', 'echo', 'FIRST'])).toBe(true);
      expect(await _remctl.remctl_commandv(r, ['test', 'echo', 'SECOND'])).toBe(true);
      const token = await _remctl.remctl_output(r);
      expect(token && readable(token)).toEqual({ type: 'output', data: 'FIRST\n', stream: 1 });
    } finally {
      await _remctl.remctl_close(r);
    }
  });
});
