// RemctlOutput is a discriminated union: checking `type` narrows a token to its own fields.

import { expectTypeOf, test } from 'vitest';
import { _remctl, type RemctlOutput } from '../../dist/index.js';

declare const token: RemctlOutput;

test('type "output" narrows to data and a stream of 1 or 2', () => {
  if (token.type === 'output') {
    expectTypeOf(token).toEqualTypeOf<{ type: 'output'; data: Buffer; stream: 1 | 2 }>();
    // @ts-expect-error: an output token has no status
    void token.status;
  }
});

test('type "status" narrows to a numeric status', () => {
  if (token.type === 'status') {
    expectTypeOf(token).toEqualTypeOf<{ type: 'status'; status: number }>();
  }
});

test('type "error" narrows to the message and the protocol error code', () => {
  if (token.type === 'error') {
    expectTypeOf(token).toEqualTypeOf<{ type: 'error'; data: Buffer; error: number }>();
  }
});

test('a switch on type covers every kind of token', () => {
  switch (token.type) {
    case 'output':
    case 'status':
    case 'error':
    case 'done':
      break;
    default:
      expectTypeOf(token).toBeNever();
  }
  expectTypeOf<RemctlOutput['type']>().toEqualTypeOf<'output' | 'status' | 'error' | 'done'>();
});

test('remctl_output resolves to a token or null', async () => {
  const next = await _remctl.remctl_output(_remctl.remctl_new());
  expectTypeOf(next).toEqualTypeOf<RemctlOutput | null>();
  // @ts-expect-error: null must be ruled out first
  void next.type;
  if (next !== null && next.type === 'output') expectTypeOf(next.data).toEqualTypeOf<Buffer>();
});
