// How long the Kerberos credentials a connection authenticated with remain
// valid: the pool retires a connection once they have expired, since the
// server goes on accepting commands on a context whose ticket has run out.
//
// libremctl does not say, and its headers bring no GSS-API or Kerberos ones,
// so the few calls needed are looked up at run time in the libraries that
// libremctl itself loaded. They take and return only opaque handles and
// integers (RFC 2744, MIT's krb5.h), declared here.
//
// Nothing here knows about N-API.
#include "credentials.h"

#include <dlfcn.h>

#include <cstdint>
#include <mutex>

namespace remctl_node {

namespace {

using OM_uint32 = uint32_t;
using krb5_error_code = int32_t;
using Handle = void*;

constexpr OM_uint32 kGssComplete = 0;
constexpr OM_uint32 kGssIndefinite = 0xffffffffu;

struct Api {
  krb5_error_code (*init_context)(Handle*) = nullptr;
  void (*free_context)(Handle) = nullptr;
  krb5_error_code (*cc_resolve)(Handle, const char*, Handle*) = nullptr;
  krb5_error_code (*cc_default)(Handle, Handle*) = nullptr;
  krb5_error_code (*cc_close)(Handle, Handle) = nullptr;
  OM_uint32 (*import_cred)(OM_uint32*, Handle, Handle, Handle, Handle*) = nullptr;
  OM_uint32 (*inquire_cred)(OM_uint32*, Handle, Handle*, OM_uint32*, int*, Handle*) = nullptr;
  OM_uint32 (*release_cred)(OM_uint32*, Handle*) = nullptr;
  bool ok = false;
};

template <typename F>
bool Find(void* library, const char* name, F* into) {
  *into = reinterpret_cast<F>(dlsym(library, name));
  return *into != nullptr;
}

const Api& Load() {
  static Api api;
  static std::once_flag loaded;
  std::call_once(loaded, [] {
    // Already in the process with libremctl: RTLD_NOLOAD takes them as they
    // are and never loads another copy.
    void* krb5 = dlopen("libkrb5.so.3", RTLD_NOW | RTLD_NOLOAD);
    void* gssapi = dlopen("libgssapi_krb5.so.2", RTLD_NOW | RTLD_NOLOAD);
    if (krb5 == nullptr || gssapi == nullptr) return;
    api.ok = Find(krb5, "krb5_init_context", &api.init_context) &&
             Find(krb5, "krb5_free_context", &api.free_context) &&
             Find(krb5, "krb5_cc_resolve", &api.cc_resolve) &&
             Find(krb5, "krb5_cc_default", &api.cc_default) &&
             Find(krb5, "krb5_cc_close", &api.cc_close) &&
             Find(gssapi, "gss_krb5_import_cred", &api.import_cred) &&
             Find(gssapi, "gss_inquire_cred", &api.inquire_cred) &&
             Find(gssapi, "gss_release_cred", &api.release_cred);
  });
  return api;
}

}  // namespace

int64_t CredentialsLifetimeSeconds(const std::optional<std::string>& ccache) {
  const Api& api = Load();
  if (!api.ok) return -1;
  Handle context = nullptr;
  if (api.init_context(&context) != 0) return -1;
  int64_t lifetime = -1;
  Handle cache = nullptr;
  const krb5_error_code opened = ccache ? api.cc_resolve(context, ccache->c_str(), &cache)
                                        : api.cc_default(context, &cache);
  if (opened == 0) {
    OM_uint32 minor = 0;
    Handle cred = nullptr;
    if (api.import_cred(&minor, cache, nullptr, nullptr, &cred) == kGssComplete) {
      OM_uint32 seconds = 0;
      if (api.inquire_cred(&minor, cred, nullptr, &seconds, nullptr, nullptr) == kGssComplete) {
        lifetime = seconds == kGssIndefinite ? -1 : static_cast<int64_t>(seconds);
      }
      api.release_cred(&minor, &cred);
    }
    api.cc_close(context, cache);
  }
  api.free_context(context);
  return lifetime;
}

}  // namespace remctl_node
