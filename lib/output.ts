/** One piece of a command's output, as `remctl_output` returns it. */
export type RemctlOutput =
  | { type: 'output'; data: Buffer; stream: 1 | 2 }
  | { type: 'status'; status: number }
  | { type: 'error'; data: Buffer; error: number }
  | { type: 'done' };

/** A command's whole output. `stdout` and `stderr` are strings when an encoding was asked for. */
export interface RemctlResult<T extends string | Buffer = Buffer> {
  stdout: T;
  stderr: T;
  /** The exit status the server sent, 0 to 255 (255 for a command killed by a signal). */
  status: number;
}
