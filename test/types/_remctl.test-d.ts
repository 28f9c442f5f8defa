// _remctl, the C API: each function's signature, with the C names and argument order.

import { expectTypeOf, test } from 'vitest';
import { _remctl, type RemctlOutput } from '../../dist/index.js';

type Handle = _remctl.RemctlHandle;
type Argument = string | Uint8Array;

test('the one-shot remctl() resolves to the fields of struct remctl_result', () => {
  expectTypeOf(_remctl.remctl).toEqualTypeOf<
    (host: string, port: number, principal: string | null | undefined, command: Iterable<Argument> & object) => Promise<_remctl.RemctlCResult>
  >();
  expectTypeOf<_remctl.RemctlCResult>().toEqualTypeOf<{ error: string | null; stdout: Buffer; stderr: Buffer; status: number }>();
});

test('remctl_new() makes a handle, which nothing else can pass for', () => {
  expectTypeOf(_remctl.remctl_new).toEqualTypeOf<() => Handle>();
  // @ts-expect-error: not a handle
  void _remctl.remctl_error({});
  // @ts-expect-error: not a handle
  void _remctl.remctl_error(null);
});

test('the opens resolve to whether they succeeded', () => {
  expectTypeOf(_remctl.remctl_open).toEqualTypeOf<(r: Handle, host: string, port: number, principal?: string | null) => Promise<boolean>>();
  expectTypeOf(_remctl.remctl_open_addrinfo).toEqualTypeOf<
    (r: Handle, host: string | null, addresses: Iterable<_remctl.SocketAddress>, principal?: string | null) => Promise<boolean>
  >();
  expectTypeOf(_remctl.remctl_open_sockaddr).toEqualTypeOf<
    (r: Handle, host: string | null, address: _remctl.SocketAddress, principal?: string | null) => Promise<boolean>
  >();
  expectTypeOf(_remctl.remctl_open_fd).toEqualTypeOf<(r: Handle, host: string | null, fd: number, principal?: string | null) => Promise<boolean>>();
  expectTypeOf<_remctl.SocketAddress>().toEqualTypeOf<{ address: string; port: number }>();
});

test('the setters and remctl_error are synchronous', () => {
  expectTypeOf(_remctl.remctl_set_ccache).toEqualTypeOf<(r: Handle, ccache: string) => boolean>();
  expectTypeOf(_remctl.remctl_set_source_ip).toEqualTypeOf<(r: Handle, source: string) => boolean>();
  expectTypeOf(_remctl.remctl_set_timeout).toEqualTypeOf<(r: Handle, timeout: number) => boolean>();
  expectTypeOf(_remctl.remctl_error).toEqualTypeOf<(r: Handle) => string>();
});

test('commands, output, noop and close wait on the network', () => {
  expectTypeOf(_remctl.remctl_command).toEqualTypeOf<(r: Handle, command: Iterable<string> & object) => Promise<boolean>>();
  expectTypeOf(_remctl.remctl_commandv).toEqualTypeOf<(r: Handle, command: Iterable<Argument> & object) => Promise<boolean>>();
  expectTypeOf(_remctl.remctl_output).toEqualTypeOf<(r: Handle) => Promise<RemctlOutput | null>>();
  expectTypeOf(_remctl.remctl_noop).toEqualTypeOf<(r: Handle) => Promise<boolean>>();
  expectTypeOf(_remctl.remctl_close).toEqualTypeOf<(r: Handle) => Promise<void>>();
});

test('remctl_command takes strings only; remctl_commandv takes bytes too', () => {
  const r = _remctl.remctl_new();
  // @ts-expect-error: binary arguments go through remctl_commandv
  void _remctl.remctl_command(r, [Buffer.from('x')]);
  void _remctl.remctl_commandv(r, ['x', Buffer.from([0])]);
});

test('the namespace holds exactly the C API', () => {
  expectTypeOf<keyof typeof _remctl>().toEqualTypeOf<
    | 'remctl'
    | 'remctl_new'
    | 'remctl_open'
    | 'remctl_open_addrinfo'
    | 'remctl_open_sockaddr'
    | 'remctl_open_fd'
    | 'remctl_set_ccache'
    | 'remctl_set_source_ip'
    | 'remctl_set_timeout'
    | 'remctl_command'
    | 'remctl_commandv'
    | 'remctl_output'
    | 'remctl_noop'
    | 'remctl_error'
    | 'remctl_close'
  >();
});
