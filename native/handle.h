// RemctlHandle: the JavaScript object behind a `struct remctl`. It keeps the
// settings in force, hands every operation to the connection's worker, and
// closes the connection from its finalizer if JavaScript never did.
#pragma once

#include <napi.h>

#include <memory>

#include "connection.h"
#include "worker.h"

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
  Napi::Value SetTimeout(const Napi::CallbackInfo& info);
  Napi::Value SetOpenRetries(const Napi::CallbackInfo& info);
  Napi::Value Closed(const Napi::CallbackInfo& info);

  Napi::Value Submit(Napi::Env env, std::unique_ptr<PromiseJob> job);
  void CheckOpen(Napi::Env env) const;

  std::shared_ptr<Worker> worker_;
  Settings settings_;
  bool closed_ = false;
};


// canonicalName(host): the canonical name getaddrinfo reports, which the C
// client uses for the default principal. Blocking: for the command-line tool.
Napi::Value CanonicalName(const Napi::CallbackInfo& info);

}  // namespace remctl_node
