// What the tests watch the client with, beyond the realm: a listener that accepts connections
// and never answers, to see whether (and when) the client connects and lets go; this process's
// thread count, to see that no thread outlives a call; how a call failed, and how fast; and what a
// node fixture run against the realm did.

import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import type { RealmSettings } from './realm-control.mjs';

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

/** How a child process ended, and everything it printed. */
export interface NodeRun {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs node with args, the realm in its environment (REMCTL_TEST_REALM for fixtures), and
 * resolves once it has ended and all its output is in; killed after timeoutMs.
 */
export function runNode(args: string[], settings: RealmSettings, timeoutMs = 20_000): Promise<NodeRun> {
  return new Promise<NodeRun>((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      env: { ...process.env, ...settings.env, REMCTL_TEST_REALM: JSON.stringify(settings) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
