#!/usr/bin/env node
// remctl(1) for Node: the C client's usage, flags, output and exit codes,
// plus --json and --stdin. Output is written as it arrives.
import { readFileSync } from 'node:fs';
import { addon } from './addon.js';
import { Remctl } from './connection.js';
import { errorCodeName } from './errors.js';
import type { RemctlOutput } from './output.js';
import { MAX_MILLISECONDS } from './validate.js';

const USAGE = `Usage: remctl <options> <host> <command> [<subcommand> [<parameters>]]

Options:
    -b <source>   Source IP used for outgoing connections
    -d            Debugging level of output
    -h            Display this help
    -p <port>     remctld port (default: 4373 falling back to 4444)
    -s <service>  remctld service principal (default: host/<host>)
    -t <timeout>  Timeout in seconds (default: 0, disable timeout)
    -v            Display the version of remctl
`;

const ADDITIONS = `
Additions to the C client:
    --json        Print one JSON object instead of the output: stdout and
                  stderr as UTF-8 text when valid, else base64 (with
                  stdoutEncoding/stderrEncoding saying which), status, and
                  error (code, errorCode, message) for a protocol error;
                  when the call fails, only error: code (ERR_REMCTL_...),
                  message, and the system error's code, syscall, address
                  and port as cause
    --stdin       Replace an argument given as - with all of standard input
                  (for commands the server feeds on stdin)
`;

// getopt's "+b:dhp:s:t:v": the letters that take a value.
const TAKES_VALUE = new Set(['b', 'p', 's', 't']);
const FLAGS = new Set(['d', 'h', 'v']);
const LONG_FLAGS = new Set(['json', 'stdin']);

interface Options {
  b?: string;
  d?: boolean;
  h?: boolean;
  p?: string;
  s?: string;
  t?: string;
  v?: boolean;
  json?: boolean;
  stdin?: boolean;
}

class Exit extends Error {
  constructor(readonly status: number) {
    super(`exit ${status}`);
  }
}

function die(message: string): never {
  process.stderr.write(`remctl: ${message}\n`);
  throw new Exit(1);
}

// A failed call, as --json prints it: the error's code and message, and the
// system error under it.
function failureJson(error: Error & { code?: unknown }): Record<string, unknown> {
  const described: Record<string, unknown> = { code: error.code, message: error.message };
  const cause = error.cause as (NodeJS.ErrnoException & { address?: string; port?: number; hostname?: string }) | undefined;
  if (cause instanceof Error) {
    const { code, errno, syscall, address, port, hostname } = cause;
    described.cause = Object.fromEntries(Object.entries({ code, errno, syscall, address, port, hostname }).filter(([, value]) => value !== undefined));
  }
  return { error: described };
}

// Fails the way the C client does (its message on stderr, exit 1), and with
// --json also prints the failure on stdout.
function fail(json: boolean | undefined, error: unknown, prefix = ''): never {
  if (json) process.stdout.write(`${JSON.stringify(failureJson(error as Error))}\n`);
  die(`${prefix}${(error as Error).message}`);
}

function usage(status: number): never {
  (status === 0 ? process.stdout : process.stderr).write(status === 0 ? USAGE + ADDITIONS : USAGE);
  throw new Exit(status);
}

// strtol's reading of a number, so bad values are reported as the C client does.
function strtol(text: string): { value: number; whole: boolean } {
  const match = /^\s*([+-]?\d+)/.exec(text);
  const value = match ? Number.parseInt(match[1]!, 10) : 0;
  return { value, whole: match !== null && match[0].length === text.length };
}

// The C client's getopt, which util.parseArgs cannot be: options end at the
// first argument that is not one (so remote commands may take options of
// their own), values may start with "-" (-t -1), and letters cluster (-dp 4373).
function splitArguments(argv: string[]): { values: Options; rest: string[] } {
  const values: Options = {};
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    if (arg.startsWith('--') && LONG_FLAGS.has(arg.slice(2))) {
      values[arg.slice(2) as 'json' | 'stdin'] = true;
      continue;
    }
    if (!arg.startsWith('-') || arg === '-') break;
    if (arg.startsWith('--')) {
      process.stderr.write(`remctl: unrecognized option '${arg}'\n`);
      usage(1);
    }
    for (let j = 1; j < arg.length; j++) {
      const letter = arg[j]!;
      if (FLAGS.has(letter)) {
        values[letter as 'd' | 'h' | 'v'] = true;
      } else if (TAKES_VALUE.has(letter)) {
        let value = arg.slice(j + 1);
        if (value === '') {
          if (i + 1 >= argv.length) {
            process.stderr.write(`remctl: option requires an argument -- '${letter}'\n`);
            usage(1);
          }
          value = argv[++i]!;
        }
        values[letter as 'b' | 'p' | 's' | 't'] = value;
        break;
      } else {
        process.stderr.write(`remctl: invalid option -- '${letter}'\n`);
        usage(1);
      }
    }
  }
  return { values, rest: argv.slice(i) };
}

function debug(enabled: boolean, message: string) {
  // Argument values are never printed: the server may mask some (stdin
  // arguments, passwords), and so do we.
  if (enabled) process.stderr.write(`remctl: ${message}\n`);
}

function encodeForJson(data: Buffer): { text: string; encoding: 'utf8' | 'base64' } {
  const text = data.toString('utf8');
  return Buffer.from(text, 'utf8').equals(data) ? { text, encoding: 'utf8' } : { text: data.toString('base64'), encoding: 'base64' };
}

function write(stream: NodeJS.WriteStream, data: Buffer): Promise<void> | undefined {
  if (stream.write(data)) return undefined;
  return new Promise((resolve) => stream.once('drain', resolve));
}

async function main(argv: string[]): Promise<number> {
  const { values, rest } = splitArguments(argv);
  if (values.h) usage(0);
  if (values.v) {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`remctl ${version}\n`);
    return 0;
  }
  let port = 0;
  if (values.p !== undefined) {
    const { value, whole } = strtol(values.p);
    if (!whole || value < 1 || value > 65535) die(`invalid port number ${value}`);
    port = value;
  }
  let timeout = 0;
  if (values.t !== undefined) {
    const { value, whole } = strtol(values.t);
    if (!whole || value < 0) die(`invalid timeout value ${value}`);
    timeout = value;
  }
  if (rest.length < 2) usage(1);
  let [host, ...command] = rest as [string, ...string[]];
  let args: Array<string | Buffer> = command;
  if (values.stdin) {
    const input = readFileSync(0);
    args = command.map((part) => (part === '-' ? input : part));
  }
  // As the C client: without -s, the default principal uses the host's
  // canonical name, the same the connection resolves.
  if (values.s === undefined) {
    try {
      host = addon.canonicalName(host);
    } catch (error) {
      die((error as Error).message);
    }
  }

  // -t is in seconds, as in C; the library counts milliseconds.
  const idleTimeout = Math.min(timeout * 1000, MAX_MILLISECONDS);
  const connection = new Remctl({ idleTimeout, ...(values.b !== undefined ? { sourceIp: values.b } : {}) });
  try {
    debug(values.d === true, `connecting to ${host} port ${port || '4373 (then 4444)'}${values.s ? ` as ${values.s}` : ''}`);
    try {
      await connection.open(host, { port, ...(values.s !== undefined ? { principal: values.s } : {}) });
      debug(values.d === true, `sending command with ${args.length} arguments`);
      await connection.command(args);
    } catch (error) {
      fail(values.json, error);
    }
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let token: RemctlOutput;
    for (;;) {
      try {
        token = await connection.output();
      } catch (error) {
        fail(values.json, error, 'error reading from server: ');
      }
      if (token.type === 'output') {
        if (values.json) (token.stream === 2 ? stderr : stdout).push(token.data);
        else await write(token.stream === 2 ? process.stderr : process.stdout, token.data);
        continue;
      }
      if (values.json) {
        const out = encodeForJson(Buffer.concat(stdout));
        const err = encodeForJson(Buffer.concat(stderr));
        const result: Record<string, unknown> = {
          stdout: out.text,
          stdoutEncoding: out.encoding,
          stderr: err.text,
          stderrEncoding: err.encoding,
          status: token.type === 'status' ? token.status : token.type === 'error' ? 255 : 0,
        };
        if (token.type === 'error') {
          result.error = { code: errorCodeName(token.error), errorCode: token.error, message: token.data.toString() };
        }
        process.stdout.write(`${JSON.stringify(result)}\n`);
      } else if (token.type === 'error') {
        await write(process.stderr, Buffer.concat([token.data, Buffer.from('\n')]));
      }
      if (token.type === 'status') return token.status;
      return token.type === 'error' ? 255 : 0;
    }
  } finally {
    await connection.close();
  }
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    if (error instanceof Exit) {
      process.exitCode = error.status;
      return;
    }
    process.stderr.write(`remctl: ${(error as Error)?.message ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
