// Servers that misbehave on purpose, for the fault tests: all on loopback, all closed by the
// test that made them. A remctl token on the wire is one byte of flags, a four-byte big-endian
// length and that many bytes (docs/protocol.html in remctl).

import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

/** A remctl protocol version 2 data token's flags: TOKEN_DATA | TOKEN_PROTOCOL. */
export const TOKEN_DATA_V2 = 0x44;
/** A context token's flags during the GSS-API exchange: TOKEN_CONTEXT | TOKEN_PROTOCOL. */
export const TOKEN_CONTEXT_V2 = 0x42;
const TOKEN_DATA = 0x04;

/** A token header with any length, true or not. */
export function tokenHeader(flags: number, length: number): Buffer {
  const header = Buffer.alloc(5);
  header[0] = flags;
  header.writeUInt32BE(length, 1);
  return header;
}

export interface TestServer {
  port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Connections still open. */
  readonly open: number;
  close(): Promise<void>;
}

async function listen(server: Server, sockets: Set<Socket>, counter: { accepted: number }, port: number): Promise<TestServer> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    get accepted() {
      return counter.accepted;
    },
    get open() {
      return sockets.size;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A loopback server that hands each accepted connection to `onConnection`. Whatever the client
 * sends is read and dropped unless onConnection reads it itself. Port 0: any free port.
 */
export async function scriptedServer(onConnection: (socket: Socket) => void, port = 0): Promise<TestServer> {
  const sockets = new Set<Socket>();
  const counter = { accepted: 0 };
  const server = createServer((socket) => {
    counter.accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket);
    if (socket.listenerCount('data') === 0) socket.resume();
  });
  return listen(server, sockets, counter, port);
}

/** Accepts and never says a word. */
export function silentServer(port = 0): Promise<TestServer> {
  return scriptedServer(() => {}, port);
}

/** Sends `bytes` as soon as a client connects, then says nothing more (or hangs up, with close). */
export function garbageServer(bytes: Buffer, { close = false } = {}): Promise<TestServer> {
  return scriptedServer((socket) => {
    if (close) socket.end(bytes);
    else socket.write(bytes);
  });
}

/**
 * A man in the middle in front of a real remctld: it relays the GSS-API exchange untouched, so
 * the client authenticates for real, and once the client has sent its first data token (the
 * command) it drops everything the server says and sends `injection` instead, then hangs up
 * if `close` is set.
 */
export async function tamperingProxy(upstreamPort: number, injection: Buffer, { close = false } = {}): Promise<TestServer> {
  return scriptedServer((client) => {
    const upstream = connect(upstreamPort, '127.0.0.1');
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    let pending = Buffer.alloc(0);
    let tampering = false;
    client.on('data', (chunk: Buffer) => {
      if (tampering) return;
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5) {
        const length = pending.readUInt32BE(1);
        if (pending.length < 5 + length) break;
        if (pending[0]! & TOKEN_DATA) tampering = true;
        pending = pending.subarray(5 + length);
      }
      upstream.write(chunk);
      if (tampering) {
        if (close) client.end(injection);
        else client.write(injection);
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!tampering) client.write(chunk);
    });
  });
}

/** The flag by which a client offers protocol version 2 (and a server accepts it). */
export const TOKEN_PROTOCOL = 0x40;

/**
 * A proxy to `upstreamPort` that clears TOKEN_PROTOCOL from every token the client sends, so
 * that remctld, seeing a client that does not offer version 2, speaks protocol version 1 to it
 * (as remctl before 2.0 did): one command per connection, closed after its output. The token
 * bodies pass untouched, so authentication works as ever.
 */
export async function version1Proxy(upstreamPort: number): Promise<TestServer> {
  return scriptedServer((client) => {
    const upstream = connect(upstreamPort, '127.0.0.1');
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.end());
    let pending = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5) {
        const length = pending.readUInt32BE(1);
        if (pending.length < 5 + length) break;
        const token = Buffer.from(pending.subarray(0, 5 + length));
        token[0] = token[0]! & ~TOKEN_PROTOCOL;
        upstream.write(token);
        pending = pending.subarray(5 + length);
      }
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
  });
}

/**
 * A proxy to `upstreamPort` that holds everything the server sends for `delayMs` before passing
 * it on: every round trip, the GSS-API handshake of an open among them, takes that much longer.
 */
export async function delayingProxy(upstreamPort: number, delayMs: number): Promise<TestServer> {
  return scriptedServer((client) => {
    const upstream = connect(upstreamPort, '127.0.0.1');
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => setTimeout(() => client.end(), delayMs));
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    upstream.on('data', (chunk: Buffer) => setTimeout(() => client.writable && client.write(chunk), delayMs));
  });
}

/**
 * A proxy in front of `upstreamPort` that holds back the last `tailBytes` of each piece the
 * server sends for `delayMs`, so the client sees the end of every token, status tokens
 * included, arrive late and apart from the rest.
 */
export async function splittingProxy(upstreamPort: number, tailBytes: number, delayMs: number): Promise<TestServer> {
  return scriptedServer((client) => {
    client.setNoDelay(true);
    const upstream = connect(upstreamPort, '127.0.0.1');
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    let relay = Promise.resolve();
    const later = (body: () => void, ms: number) => new Promise<void>((resolve) => setTimeout(() => resolve(body()), ms));
    upstream.on('close', () => {
      relay = relay.then(() => void client.end());
    });
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    upstream.on('data', (chunk: Buffer) => {
      relay = relay.then(async () => {
        if (!client.writable) return;
        const cut = Math.max(chunk.length - tailBytes, 0);
        if (cut > 0) client.write(chunk.subarray(0, cut));
        await later(() => client.writable && client.write(chunk.subarray(cut)), delayMs);
      });
    });
  });
}
