// Starts the throwaway realm, runs a few real commands through the library
// against its remctld, prints what came back, and stops the realm.
import { startRealm } from '../test/realm.mjs';

const realm = await startRealm();
try {
  // The realm's krb5.conf and the client's ticket cache, for libremctl.
  Object.assign(process.env, realm.env);
  const { remctl, Remctl, RemctlProtocolError } = await import('../dist/index.js');
  const host = realm.host;
  const port = realm.port;
  console.log(`realm ${realm.realm}: KDC on 127.0.0.1:${realm.kdcPort}, remctld on ${host}:${port} as ${realm.principal}\n`);

  const hello = await remctl(host, ['test', 'test'], { port, encoding: 'utf8' });
  console.log(`remctl(['test', 'test'])          -> status ${hello.status}, stdout ${JSON.stringify(hello.stdout)}`);

  const echo = await remctl(host, ['test', 'echo', 'héllo', Buffer.from([0xde, 0xad, 0xbe, 0xef])], { port });
  console.log(`remctl(['test', 'echo', ...])     -> stdout ${echo.stdout.toString('hex')} (hex), stderr ${JSON.stringify(echo.stderr.toString())}`);

  const connection = await Remctl.connect(host, { port });
  try {
    const started = performance.now();
    for (let i = 0; i < 20; i++) await connection.run(['test', 'test']);
    const perCommand = (performance.now() - started) / 20;
    const whoami = await connection.run(['test', 'whoami'], { encoding: 'utf8' });
    console.log(`Remctl#run(['test', 'whoami'])    -> ${whoami.stdout.trim()}`);
    console.log(`20 commands on one connection    -> ${perCommand.toFixed(2)} ms per command`);
    const exit = await connection.run(['test', 'status', '3']);
    console.log(`Remctl#run(['test', 'status', '3']) -> status ${exit.status}`);
    try {
      await connection.run(['no-such-command']);
    } catch (error) {
      if (!(error instanceof RemctlProtocolError)) throw error;
      console.log(`Remctl#run(['no-such-command'])  -> ${error.name} ${error.code}: ${error.message}`);
    }
  } finally {
    await connection.close();
  }
} finally {
  await realm.stop();
  console.log('\nrealm stopped and removed');
}
