// Conversions between JavaScript values and what the connection works with.
#pragma once

#include <napi.h>

#include "connection.h"

namespace remctl_node {

// An array of strings (sent as UTF-8), Buffers or Uint8Arrays, copied into
// one block. Throws a TypeError naming `name` for anything else.
Arguments ToArguments(const Napi::Value& value, const char* name);

// A token's data, copied into memory V8 allocates and accounts for at its
// real size: a stream's spent Buffers are then collected with the garbage
// that holds them, where external memory freed by finalizers piled up
// (measured: 94 MiB for 256 MiB of 4 KiB tokens, against 11 MiB copied).
Napi::Buffer<char> TokenBuffer(Napi::Env env, ByteBuffer&& bytes);

// Hands the bytes to JavaScript as an ArrayBuffer (undefined when empty),
// which JavaScript views as a Buffer: far cheaper than a Buffer made here,
// which N-API gives Buffer.prototype object by object. Large buffers (a whole
// command's output) go without a copy.
Napi::Value ToBytes(Napi::Env env, ByteBuffer&& bytes);

// {type, data?, stream?, status?, error?} with exactly the fields the C
// struct remctl_output fills for the type.
Napi::Object ToTokenObject(Napi::Env env, Token&& token);

// {host?, port?, principal?} or with `addresses: [{address, port}]` or
// `fd` instead of a port: where the JavaScript layer asks to open.
OpenTarget ToOpenTarget(const Napi::Value& value);

}  // namespace remctl_node
