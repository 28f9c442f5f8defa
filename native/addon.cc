// The remctl addon: a native object per `struct remctl`. Each worker registers its own environment cleanup hook, so nothing
// is left running when the environment exits.
#include <napi.h>

#include "handle.h"

namespace remctl_node {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("RemctlHandle", RemctlHandle::Define(env));
  exports.Set("canonicalName", Napi::Function::New<CanonicalName>(env, "canonicalName"));
  return exports;
}

}  // namespace remctl_node

static Napi::Object InitRemctl(Napi::Env env, Napi::Object exports) {
  return remctl_node::Init(env, exports);
}

NODE_API_MODULE(remctl, InitRemctl)
