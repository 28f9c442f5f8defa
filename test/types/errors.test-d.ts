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
  RemctlProtocolError,
} from '../../dist/index.js';

test('RemctlProtocolError and RemctlNotOpenedError are RemctlErrors, which are Errors', () => {
  expectTypeOf<RemctlError>().toExtend<Error>();
  expectTypeOf<RemctlProtocolError>().toExtend<RemctlError>();
  expectTypeOf<RemctlNotOpenedError>().toExtend<RemctlError>();
  expectTypeOf(RemctlError).constructorParameters.toEqualTypeOf<[message: string, options?: ErrorOptions]>();
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

test('MaxBufferError is a RangeError with its code and what had arrived', () => {
  expectTypeOf<MaxBufferError>().toExtend<RangeError>();
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
