// The error classes, their hierarchy and fields, and the protocol's error codes.

import { expectTypeOf, test } from 'vitest';
import {
  ERROR_ACCESS,
  ERROR_BAD_COMMAND,
  ERROR_BAD_TOKEN,
  ERROR_INTERNAL,
  ERROR_NO_HELP,
  ERROR_TOOMANY_ARGS,
  ERROR_TOOMUCH_DATA,
  ERROR_UNEXPECTED_MESSAGE,
  ERROR_UNKNOWN_COMMAND,
  ERROR_UNKNOWN_MESSAGE,
  MaxBufferError,
  RemctlError,
  RemctlNotOpenedError,
  RemctlOutputPendingError,
  RemctlProtocolError,
  type RemctlErrorCode,
} from '../../dist/index.js';

test('RemctlProtocolError, RemctlNotOpenedError and MaxBufferError are RemctlErrors, which are Errors', () => {
  expectTypeOf<RemctlError>().toExtend<Error>();
  expectTypeOf<RemctlProtocolError>().toExtend<RemctlError>();
  expectTypeOf<RemctlNotOpenedError>().toExtend<RemctlError>();
  expectTypeOf<MaxBufferError>().toExtend<RemctlError>();
  expectTypeOf(RemctlError).constructorParameters.toEqualTypeOf<[message: string, code: RemctlErrorCode | (string & {}), options?: ErrorOptions]>();
});

test('every RemctlError has a read-only string code; the classes with one code say which', () => {
  expectTypeOf<RemctlError['code']>().toEqualTypeOf<string>();
  expectTypeOf<RemctlNotOpenedError['code']>().toEqualTypeOf<'ERR_REMCTL_NOT_OPEN'>();
  expectTypeOf<RemctlOutputPendingError['code']>().toEqualTypeOf<'ERR_REMCTL_OUTPUT_PENDING'>();
  expectTypeOf<'ERR_REMCTL_CONNECT'>().toExtend<RemctlErrorCode>();
  expectTypeOf<'ERR_REMCTL_AUTH'>().toExtend<RemctlErrorCode>();
  expectTypeOf<'ERR_REMCTL_TIMEOUT'>().toExtend<RemctlErrorCode>();
  expectTypeOf<'ERR_REMCTL_CONNECTION_LOST'>().toExtend<RemctlErrorCode>();
  expectTypeOf<'ERR_REMCTL_BAD_RESPONSE'>().toExtend<RemctlErrorCode>();
  expectTypeOf<'ERR_REMCTL_POOL_CLOSED'>().toExtend<RemctlErrorCode>();
  expectTypeOf<'ERR_REMCTL_UNSUPPORTED'>().toExtend<RemctlErrorCode>();
  // @ts-expect-error: not a code of this library
  expectTypeOf<'ERR_SOMETHING_ELSE'>().toExtend<RemctlErrorCode>();
  const error = new RemctlError('x', 'ERR_REMCTL_AUTH');
  // @ts-expect-error: read-only
  error.code = 'ERR_REMCTL_TIMEOUT';
  switch (error.code as RemctlErrorCode) {
    case 'ERR_REMCTL_CONNECT':
      expectTypeOf(error.cause).toBeUnknown();
      break;
    default:
  }
});

test('RemctlProtocolError carries the numeric errorCode and its name as code, both read-only', () => {
  expectTypeOf<RemctlProtocolError['errorCode']>().toEqualTypeOf<number>();
  expectTypeOf<RemctlProtocolError['code']>().toEqualTypeOf<string>();
  const error = new RemctlProtocolError('Access denied', ERROR_ACCESS);
  // @ts-expect-error: read-only
  error.errorCode = 5;
  // @ts-expect-error: read-only
  error.code = 'ERROR_UNKNOWN_COMMAND';
});

test('MaxBufferError is a RemctlError with its code and what had arrived', () => {
  expectTypeOf<MaxBufferError['code']>().toEqualTypeOf<'ERR_REMCTL_MAXBUFFER'>();
  expectTypeOf<MaxBufferError['stdout']>().toEqualTypeOf<Buffer>();
  expectTypeOf<MaxBufferError['stderr']>().toEqualTypeOf<Buffer>();
});

test('instanceof narrows a caught error to its fields', () => {
  try {
    throw new Error('x');
  } catch (error) {
    expectTypeOf(error).toBeUnknown();
    if (error instanceof RemctlProtocolError) {
      expectTypeOf(error.errorCode).toEqualTypeOf<number>();
      expectTypeOf(error.message).toEqualTypeOf<string>();
    } else if (error instanceof MaxBufferError) {
      expectTypeOf(error.stdout).toEqualTypeOf<Buffer>();
    }
  }
});

test('the error codes are their protocol numbers', () => {
  expectTypeOf<typeof ERROR_INTERNAL>().toEqualTypeOf<1>();
  expectTypeOf<typeof ERROR_BAD_TOKEN>().toEqualTypeOf<2>();
  expectTypeOf<typeof ERROR_UNKNOWN_MESSAGE>().toEqualTypeOf<3>();
  expectTypeOf<typeof ERROR_BAD_COMMAND>().toEqualTypeOf<4>();
  expectTypeOf<typeof ERROR_UNKNOWN_COMMAND>().toEqualTypeOf<5>();
  expectTypeOf<typeof ERROR_ACCESS>().toEqualTypeOf<6>();
  expectTypeOf<typeof ERROR_TOOMANY_ARGS>().toEqualTypeOf<7>();
  expectTypeOf<typeof ERROR_TOOMUCH_DATA>().toEqualTypeOf<8>();
  expectTypeOf<typeof ERROR_UNEXPECTED_MESSAGE>().toEqualTypeOf<9>();
  expectTypeOf<typeof ERROR_NO_HELP>().toEqualTypeOf<10>();
});
