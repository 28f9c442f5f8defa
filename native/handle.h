// RemctlHandle: the JavaScript object behind a `struct remctl`. It keeps the
// settings in force, turns every call into an operation on its connection
// (see engine.h), and abandons the connection from its finalizer if
// JavaScript never closed it.
#pragma once

#include <napi.h>

#include <memory>

#include "connection.h"
#include "engine.h"

namespace remctl_node {

class RemctlHandle : public Napi::ObjectWrap<RemctlHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit RemctlHandle(const Napi::CallbackInfo& info);
  ~RemctlHandle() override;

 private:
  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Command(const Napi::CallbackInfo& info);
  Napi::Value Output(const Napi::CallbackInfo& info);
  Napi::Value OutputBatch(const Napi::CallbackInfo& info);
  Napi::Value Noop(const Napi::CallbackInfo& info);
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value RunOnce(const Napi::CallbackInfo& info);
  Napi::Value RunSync(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Error(const Napi::CallbackInfo& info);
  Napi::Value SetCcache(const Napi::CallbackInfo& info);
  Napi::Value SetSourceIp(const Napi::CallbackInfo& info);
  Napi::Value SetIdleTimeout(const Napi::CallbackInfo& info);
  Napi::Value SetConnectTimeout(const Napi::CallbackInfo& info);
  Napi::Value TrackCredentials(const Napi::CallbackInfo& info);
  Napi::Value SetOpenRetries(const Napi::CallbackInfo& info);
  Napi::Value SetSocketBuffers(const Napi::CallbackInfo& info);
  Napi::Value Closed(const Napi::CallbackInfo& info);
  Napi::Value OpenEnded(const Napi::CallbackInfo& info);
  Napi::Value CredentialsExpire(const Napi::CallbackInfo& info);
  Napi::Value Opens(const Napi::CallbackInfo& info);
  Napi::Value ServerClosed(const Napi::CallbackInfo& info);

  void Submit(std::unique_ptr<Op> op);
  void CheckOpen(Napi::Env env) const;

  std::shared_ptr<Conn> conn_;
  Settings settings_;
  bool closed_ = false;
  bool used_ = false;  // an operation was ever queued
};

// canonicalName(host): the canonical name getaddrinfo reports, which the C
// client uses for the default principal. Blocking: for the command-line tool.
Napi::Value CanonicalName(const Napi::CallbackInfo& info);

// threads(): {threads, idle}, the threads of ours this environment has now
// and how many of them wait for work, for the tests and the bench.
Napi::Value Threads(const Napi::CallbackInfo& info);

}  // namespace remctl_node
