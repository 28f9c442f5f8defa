// The remctl addon: a native object per `struct remctl`. Each environment's
// instance data is its Engine: its event loop, its threads and connections,
// and the one cleanup hook that ends them when the environment exits.
#include <napi.h>

#include "handle.h"

namespace remctl_node {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Each load of the addon has a napi_env of its own, freed (with this)
  // only after every cleanup hook of the environment has run.
  env.SetInstanceData(new Engine(env));
  exports.Set("RemctlHandle", RemctlHandle::Define(env));
  exports.Set("canonicalName", Napi::Function::New<CanonicalName>(env, "canonicalName"));
  exports.Set("threads", Napi::Function::New<Threads>(env, "threads"));
  return exports;
}

}  // namespace remctl_node

static Napi::Object InitRemctl(Napi::Env env, Napi::Object exports) {
  return remctl_node::Init(env, exports);
}

NODE_API_MODULE(remctl, InitRemctl)
