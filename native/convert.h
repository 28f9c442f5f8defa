// Conversions between JavaScript values and what the connection works with.
#pragma once

#include <napi.h>

#include "connection.h"

namespace remctl_node {

// An array of strings (sent as UTF-8), Buffers or Uint8Arrays, copied into
// one block. Throws a TypeError naming `name` for anything else.
Arguments ToArguments(const Napi::Value& value, const char* name);


// Hands the bytes to JavaScript as an ArrayBuffer (undefined when empty),
// which JavaScript views as a Buffer: far cheaper than a Buffer made here,
// which N-API gives Buffer.prototype object by object. Large buffers (a whole
// command's output) go without a copy, as external memory that a finalizer
// frees: one such buffer per call.
Napi::Value ToBytes(Napi::Env env, ByteBuffer&& bytes);
// The same, always copied into memory V8 allocates: for tokens, which come by
// the thousand, and whose external buffers would wait for finalizers.
Napi::Value CopyBytes(Napi::Env env, const ByteBuffer& bytes);

// Appends a token as three elements, [kind, data, number]: kind 1 output
// (number: the stream), 2 status (the status), 3 error (the error code), 4
// done; data an ArrayBuffer (see CopyBytes) or undefined. lib/addon.ts makes
// the token objects: named properties set from here cost a string each, and
// a Buffer made here a prototype change (measured: a third of a stream's
// CPU). The data is copied into memory V8 allocates and accounts for at its
// real size, where external buffers freed by finalizers piled up (94 MiB
// for 256 MiB of 4 KiB tokens, against 11 MiB copied), whatever the size.
void AppendToken(Napi::Env env, Napi::Array& into, uint32_t& at, Token&& token);

// A failure as JavaScript takes it: {message, reason, errno?, code?,
// syscall?, address?, port?}, where reason is the Failure's name and the
// rest the system error under it, if any. lib/errors.ts makes the error.
Napi::Value FailureValue(Napi::Env env, const Status& status);

// {host?, port?, principal?} or with `addresses: [{address, port}]` or
// `fd` instead of a port: where the JavaScript layer asks to open.
OpenTarget ToOpenTarget(const Napi::Value& value);

}  // namespace remctl_node
