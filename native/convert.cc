#include "convert.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace remctl_node {

namespace {

// Below this size a copy is cheaper than an external buffer's finalizer;
// above it (a full 64 KiB token, say) handing the memory over is cheaper.
constexpr size_t kCopyBelow = 16 * 1024;

[[noreturn]] void ThrowType(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

std::string StringProperty(const Napi::Object& object, const char* key) {
  Napi::Value value = object.Get(key);
  if (!value.IsString()) {
    ThrowType(object.Env(), std::string(key) + " must be a string");
  }
  return value.As<Napi::String>().Utf8Value();
}

}  // namespace

Arguments ToArguments(const Napi::Value& value, const char* name) {
  Napi::Env env = value.Env();
  if (!value.IsArray()) ThrowType(env, std::string(name) + " must be an array");
  Napi::Array array = value.As<Napi::Array>();
  const uint32_t count = array.Length();
  Arguments args;
  args.lengths.reserve(count);
  for (uint32_t i = 0; i < count; i++) {
    Napi::Value part = array.Get(i);
    if (part.IsString()) {
      std::string text = part.As<Napi::String>().Utf8Value();
      args.bytes.append(text);
      args.lengths.push_back(text.size());
    } else if (part.IsTypedArray() &&
               part.As<Napi::TypedArray>().TypedArrayType() ==
                   napi_uint8_array) {
      Napi::Uint8Array bytes = part.As<Napi::Uint8Array>();
      args.bytes.append(reinterpret_cast<const char*>(bytes.Data()),
                        bytes.ByteLength());
      args.lengths.push_back(bytes.ByteLength());
    } else {
      ThrowType(env, std::string(name) + "[" + std::to_string(i) +
                         "] must be a string, Buffer or Uint8Array");
    }
  }
  return args;
}

Napi::Value CopyBytes(Napi::Env env, const ByteBuffer& bytes) {
  const size_t size = bytes.size();
  if (size == 0) return env.Undefined();
  Napi::ArrayBuffer copy = Napi::ArrayBuffer::New(env, size);
  std::memcpy(copy.Data(), bytes.data(), size);
  return copy;
}

Napi::Value ToBytes(Napi::Env env, ByteBuffer&& bytes) {
  const size_t size = bytes.size();
  if (size < kCopyBelow) return CopyBytes(env, bytes);
  char* data = bytes.Release();
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(size));
  return Napi::ArrayBuffer::New(
      env, data, size, [size](Napi::Env finalize_env, void* released) {
        std::free(released);
        Napi::MemoryManagement::AdjustExternalMemory(
            finalize_env, -static_cast<int64_t>(size));
      });
}

void AppendToken(Napi::Env env, Napi::Array& into, uint32_t& at, Token&& token) {
  switch (token.type) {
    case Token::Type::kOutput:
      into.Set(at++, Napi::Number::New(env, 1));
      into.Set(at++, CopyBytes(env, token.data));
      into.Set(at++, Napi::Number::New(env, token.stream));
      break;
    case Token::Type::kStatus:
      into.Set(at++, Napi::Number::New(env, 2));
      into.Set(at++, env.Undefined());
      into.Set(at++, Napi::Number::New(env, token.status));
      break;
    case Token::Type::kError:
      into.Set(at++, Napi::Number::New(env, 3));
      into.Set(at++, CopyBytes(env, token.data));
      into.Set(at++, Napi::Number::New(env, token.error));
      break;
    case Token::Type::kDone:
      into.Set(at++, Napi::Number::New(env, 4));
      into.Set(at++, env.Undefined());
      into.Set(at++, Napi::Number::New(env, 0));
      break;
  }
}

Napi::Value FailureValue(Napi::Env env, const Status& status) {
  Napi::Object failure = Napi::Object::New(env);
  failure.Set("message", status.message);
  failure.Set("reason", FailureName(status.failure));
  const SystemError& system = status.system;
  if (system.syscall.empty()) return failure;
  failure.Set("syscall", system.syscall);
  if (system.number != 0) failure.Set("errno", system.number);
  if (!system.code.empty()) failure.Set("code", system.code);
  if (!system.address.empty()) failure.Set("address", system.address);
  if (system.port != 0) failure.Set("port", system.port);
  return failure;
}

OpenTarget ToOpenTarget(const Napi::Value& value) {
  Napi::Env env = value.Env();
  if (!value.IsObject()) ThrowType(env, "target must be an object");
  Napi::Object object = value.As<Napi::Object>();
  OpenTarget target;
  Napi::Value host = object.Get("host");
  if (host.IsString()) target.host = host.As<Napi::String>().Utf8Value();
  Napi::Value principal = object.Get("principal");
  if (principal.IsString()) {
    target.principal = principal.As<Napi::String>().Utf8Value();
  }
  Napi::Value port = object.Get("port");
  if (port.IsNumber()) {
    target.port = static_cast<unsigned short>(port.As<Napi::Number>().Uint32Value());
  }
  Napi::Value addresses = object.Get("addresses");
  Napi::Value fd = object.Get("fd");
  if (addresses.IsArray()) {
    target.kind = OpenTarget::Kind::kAddresses;
    Napi::Array list = addresses.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Value entry = list.Get(i);
      if (!entry.IsObject()) ThrowType(env, "addresses must hold objects");
      SocketAddress address;
      address.address = StringProperty(entry.As<Napi::Object>(), "address");
      address.port = static_cast<unsigned short>(
          entry.As<Napi::Object>().Get("port").ToNumber().Uint32Value());
      target.addresses.push_back(std::move(address));
    }
  } else if (fd.IsNumber()) {
    target.kind = OpenTarget::Kind::kFd;
    // Our own duplicate: the caller's descriptor stays the caller's.
    target.fd = fcntl(fd.As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 0);
    if (target.fd < 0) {
      throw Napi::RangeError::New(
          env, std::string("fd must be an open file descriptor: ") + strerror(errno));
    }
  }
  return target;
}

}  // namespace remctl_node
