// What a round trip costs the client with no remctl in it, from C and from
// Node's own net.Socket: the floor under the session rows of npm run bench.
// A Node client cannot spend less per command than Node spends per round
// trip, plus what libremctl itself does (GSS-API wrapping, its reads).
//
// usage: node bench/floor/run.mjs [count]
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const count = Number(process.argv[2] ?? 5000);

async function echoServer() {
  const child = spawn(process.execPath, [join(here, 'echo-server.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = await once(child.stdout, 'data');
  return { child, port: Number(String(line).trim()) };
}

async function nodeRoundTrips(port) {
  const socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await once(socket, 'connect');
  const message = Buffer.alloc(89);
  let got = 0;
  let done = () => {};
  socket.on('data', (chunk) => {
    got += chunk.length;
    if (got >= 152) {
      got -= 152;
      done();
    }
  });
  const roundTrip = () =>
    new Promise((resolve) => {
      done = resolve;
      socket.write(message);
    });
  for (let i = 0; i < 200; i++) await roundTrip();
  const start = process.cpuUsage();
  for (let i = 0; i < count; i++) await roundTrip();
  const used = process.cpuUsage(start);
  socket.destroy();
  return (used.user + used.system) / 1000 / count;
}

const work = mkdtempSync(join(tmpdir(), 'remctl-floor-'));
try {
  const binary = join(work, 'pingpong');
  execFileSync('cc', ['-O2', '-Wall', '-o', binary, join(here, 'pingpong.c')]);
  const rounds = [];
  for (let round = 0; round < 3; round++) {
    const c = await echoServer();
    const fromC = JSON.parse(execFileSync(binary, [String(c.port), String(count)], { encoding: 'utf8' })).cpuPerRoundTripMs;
    await once(c.child, 'exit');
    const n = await echoServer();
    const fromNode = await nodeRoundTrips(n.port);
    await once(n.child, 'exit');
    rounds.push({ c: fromC, node: fromNode });
  }
  const median = (values) => values.sort((a, b) => a - b)[values.length >> 1];
  const c = median(rounds.map((r) => r.c));
  const node = median(rounds.map((r) => r.node));
  console.log(JSON.stringify({ count, rounds, median: { cMs: c, nodeNetMs: node, ratio: node / c } }));
} finally {
  rmSync(work, { recursive: true, force: true });
}
