// What the tests watch the client with, beyond the realm: a listener that accepts connections
// and never answers, to see whether (and when) the client connects and lets go; this process's
// thread count, to see that no thread outlives a call; and how a call failed, and how fast.

import { readdirSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';

export interface SilentServer {
  port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Connections the client has not closed yet. */
  readonly open: number;
  close(): Promise<void>;
}

/** A loopback TCP listener that accepts every connection and never sends a byte. */
export async function silentServer(): Promise<SilentServer> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server = createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    // Read (and drop) what the client sends, so that its end of the connection is seen.
    socket.resume();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    get accepted() {
      return accepted;
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

export function threadCount(): number {
  return readdirSync('/proc/self/task').length;
}

/** What a promise rejects with, and how many milliseconds after `from` it did. */
export async function rejection(promise: Promise<unknown>, from = Date.now()): Promise<{ error: unknown; ms: number }> {
  try {
    await promise;
  } catch (error) {
    return { error, ms: Date.now() - from };
  }
  throw new Error('expected the promise to reject, but it resolved');
}
