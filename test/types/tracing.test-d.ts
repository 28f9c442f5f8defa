// The contexts that remctl:open and remctl:command publish, as dist/index.d.ts declares them, and
// how they type a subscriber of node:diagnostics_channel.

import { tracingChannel } from 'node:diagnostics_channel';
import { expectTypeOf, test } from 'vitest';
import type { RemctlCommandContext, RemctlOpenContext } from '../../dist/index.js';

test('an open context has the target asked for and the connection id, and a code on failure', () => {
  expectTypeOf<RemctlOpenContext>().toEqualTypeOf<{
    host: string;
    port: number;
    principal: string | undefined;
    connectionId: number;
    code?: string;
  }>();
});

test('a command context adds the first two words, whether the connection was reused, and the status once ended', () => {
  expectTypeOf<RemctlCommandContext>().toEqualTypeOf<{
    host: string;
    port: number;
    principal: string | undefined;
    connectionId: number;
    code?: string;
    command: string[];
    reused: boolean;
    status?: number;
  }>();
  expectTypeOf<RemctlCommandContext>().toExtend<RemctlOpenContext>();
});

test('types the messages of a tracing channel subscriber, with the error and result that Node.js adds', () => {
  tracingChannel<unknown, RemctlCommandContext>('remctl:command').subscribe({
    start(context) {
      expectTypeOf(context.command).toEqualTypeOf<string[]>();
      expectTypeOf(context.reused).toEqualTypeOf<boolean>();
    },
    end() {},
    asyncStart() {},
    asyncEnd(context) {
      expectTypeOf(context.status).toEqualTypeOf<number | undefined>();
    },
    error(context) {
      expectTypeOf(context.error).toBeUnknown();
      expectTypeOf(context.code).toEqualTypeOf<string | undefined>();
    },
  });
  tracingChannel<unknown, RemctlOpenContext>('remctl:open').subscribe({
    start(context) {
      expectTypeOf(context.connectionId).toEqualTypeOf<number>();
      // @ts-expect-error: an open runs no command
      void context.command;
    },
    end() {},
    asyncStart() {},
    asyncEnd() {},
    error() {},
  });
});
