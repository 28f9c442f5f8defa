// The other end of the floor measurement (see run.mjs): answers every 89
// bytes with 84 and then 68, as remctld answers `test test` with an output
// and a status token. Prints its port, serves one connection, exits.
import { createServer } from 'node:net';

const server = createServer((socket) => {
  socket.setNoDelay(true);
  let pending = 0;
  socket.on('data', (chunk) => {
    pending += chunk.length;
    for (; pending >= 89; pending -= 89) {
      socket.write(Buffer.alloc(84));
      socket.write(Buffer.alloc(68));
    }
  });
  socket.on('close', () => server.close());
  socket.on('error', () => server.close());
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
