// The threads the addon starts, as /proc shows them: by name (see native/thread.h) and with the
// signals each blocks (SigBlk in /proc/<pid>/task/<tid>/status, bit n-1 for signal n).

import { readdirSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';

/** Every standard signal a thread can block: all but SIGKILL and SIGSTOP, which no mask holds. */
export const BLOCKABLE = Object.entries(constants.signals)
  .filter(([name, number]) => number < 32 && name !== 'SIGKILL' && name !== 'SIGSTOP' && name !== 'SIGIOT' && name !== 'SIGPOLL')
  .map(([name, number]) => ({ name, number }));

/**
 * The names of the blockable signals a thread of this process does not block.
 * @param {string | number} tid
 */
export function unblockedSignals(tid) {
  const status = readFileSync(`/proc/self/task/${tid}/status`, 'utf8');
  const match = /^SigBlk:\s*([0-9a-f]+)$/m.exec(status);
  if (!match) throw new Error(`no SigBlk line in the status of thread ${tid}`);
  const blocked = BigInt(`0x${match[1]}`);
  return BLOCKABLE.filter(({ number }) => (blocked & (1n << BigInt(number - 1))) === 0n).map(({ name }) => name);
}

/**
 * This process's threads whose name starts with "remctl", each with the signals it leaves
 * unblocked. A thread that ends while it is being read is left out.
 * @returns {{ tid: string, name: string, unblocked: string[] }[]}
 */
export function remctlThreads() {
  const threads = [];
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const name = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      if (name.startsWith('remctl')) threads.push({ tid, name, unblocked: unblockedSignals(tid) });
    } catch {
      // Gone since the listing.
    }
  }
  return threads;
}
