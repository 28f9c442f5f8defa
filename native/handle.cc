#include "handle.h"

#include <netdb.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <utility>

#include "convert.h"

namespace remctl_node {

namespace {

constexpr const char* kNoError = "no error";

// Operations that succeed or fail resolve to undefined, or to the error text
// (also kept for remctl_error). Resolving with the text itself means a caller
// never reads an error that a later operation already replaced.
Napi::Value StatusValue(Napi::Env env, Worker& worker, const Status& status) {
  worker.last_error = status.ok ? kNoError : status.message;
  if (status.ok) return env.Undefined();
  return Napi::String::New(env, status.message);
}

// open, command and noop: resolve to undefined, or to the error text (which
// remctl_error also reports).
class StatusJob : public PromiseJob {
 public:
  using Operation = std::function<Status(Connection&)>;
  StatusJob(Napi::Env env, Operation operation)
      : PromiseJob(env), operation_(std::move(operation)) {}
  void Execute(Connection& connection) override {
    status_ = operation_(connection);
  }
  void Failed(const std::string& message) override { status_ = {false, message}; }
  void Settle(Napi::Env env, Worker& worker) override {
    Resolve(StatusValue(env, worker, status_));
  }

 private:
  Operation operation_;
  Status status_;
};

// Holds a target whose descriptor (remctl_open_fd) is ours until opened.
class TargetHolder {
 public:
  explicit TargetHolder(OpenTarget target) : target_(std::move(target)) {}
  ~TargetHolder() {
    if (target_.fd >= 0) close(target_.fd);
  }
  OpenTarget Take() {
    OpenTarget taken = target_;
    target_.fd = -1;
    return taken;
  }

 private:
  OpenTarget target_;
};

class OutputJob : public PromiseJob {
 public:
  OutputJob(Napi::Env env, Settings settings)
      : PromiseJob(env), settings_(std::move(settings)) {}
  void Execute(Connection& connection) override {
    result_ = connection.Output(settings_);
  }
  void Failed(const std::string& message) override {
    result_.status = {false, message};
  }
  void Settle(Napi::Env env, Worker& worker) override {
    if (!result_.status.ok) {
      Resolve(StatusValue(env, worker, result_.status));
      return;
    }
    worker.last_error = kNoError;
    Resolve(ToTokenObject(env, std::move(result_.token)));
  }

 private:
  Settings settings_;
  OutputResult result_;
};

// [ok, message, stdout, stderr, status, exceeded, errorCode, errorMessage]:
// elements, not named properties, which cost a string lookup and a shape
// change each; lib/addon.ts turns it into an object.
Napi::Array ToRunArray(Napi::Env env, RunResult&& result) {
  Napi::Array array = Napi::Array::New(env, 8);
  array.Set(0u, Napi::Boolean::New(env, result.status.ok));
  if (!result.status.ok) array.Set(1u, Napi::String::New(env, result.status.message));
  array.Set(2u, ToBuffer(env, std::move(result.out)));
  array.Set(3u, ToBuffer(env, std::move(result.err)));
  array.Set(4u, Napi::Number::New(env, result.exit_status));
  array.Set(5u, Napi::Boolean::New(env, result.exceeded));
  if (result.protocol_error) {
    array.Set(6u, Napi::Number::New(env, result.error_code));
    array.Set(7u, Napi::String::New(env, result.error_message));
  }
  return array;
}

// Opens, runs one command and closes: the one-shot call's whole exchange.
RunResult RunOnConnection(Connection& connection, OpenTarget target,
                          const Arguments& args, const Settings& settings,
                          size_t max_output) {
  RunResult result;
  result.status = connection.Open(std::move(target), settings);
  if (result.status.ok) result = connection.Run(args, settings, max_output);
  connection.Close();
  return result;
}

class OutputBatchJob : public PromiseJob {
 public:
  OutputBatchJob(Napi::Env env, Settings settings, size_t max_bytes)
      : PromiseJob(env), settings_(std::move(settings)), max_bytes_(max_bytes) {}
  void Execute(Connection& connection) override {
    batch_ = connection.OutputBatch(settings_, max_bytes_);
  }
  void Failed(const std::string& message) override {
    batch_.status = {false, message};
  }
  // Resolves to the tokens, followed by the error text if reading failed.
  void Settle(Napi::Env env, Worker& worker) override {
    worker.last_error = batch_.status.ok ? kNoError : batch_.status.message;
    const uint32_t count = static_cast<uint32_t>(batch_.tokens.size());
    Napi::Array tokens = Napi::Array::New(env, count + (batch_.status.ok ? 0 : 1));
    for (uint32_t i = 0; i < count; i++) {
      tokens.Set(i, ToTokenObject(env, std::move(batch_.tokens[i])));
    }
    if (!batch_.status.ok) tokens.Set(count, Napi::String::New(env, batch_.status.message));
    Resolve(tokens);
  }

 private:
  Settings settings_;
  size_t max_bytes_;
  Connection::BatchResult batch_;
};

// One command and all its output, on an open connection or, for the
// one-shot call, on a connection opened first and closed after.
class RunJob : public PromiseJob {
 public:
  RunJob(Napi::Env env, Arguments args, Settings settings, size_t max_output,
         std::unique_ptr<TargetHolder> open_first)
      : PromiseJob(env),
        args_(std::move(args)),
        settings_(std::move(settings)),
        max_output_(max_output),
        open_first_(std::move(open_first)) {}
  void Execute(Connection& connection) override {
    if (open_first_) {
      result_ = RunOnConnection(connection, open_first_->Take(), args_,
                                settings_, max_output_);
      return;
    }
    result_ = connection.Run(args_, settings_, max_output_);
  }
  void Failed(const std::string& message) override {
    result_.status = {false, message};
  }
  void Settle(Napi::Env env, Worker& worker) override {
    worker.last_error = result_.status.ok ? kNoError : result_.status.message;
    Resolve(ToRunArray(env, std::move(result_)));
  }

 private:
  Arguments args_;
  Settings settings_;
  size_t max_output_;
  std::unique_ptr<TargetHolder> open_first_;
  RunResult result_;
};

class CloseJob : public PromiseJob {
 public:
  explicit CloseJob(Napi::Env env) : PromiseJob(env) {}
  void Execute(Connection& connection) override { connection.Close(); }
  void Failed(const std::string&) override {}
  void Settle(Napi::Env env, Worker& worker) override {
    worker.last_error = kNoError;
    Resolve(env.Undefined());
  }
};

size_t ToMaxOutput(const Napi::Value& value) {
  if (!value.IsNumber()) return 0;
  double max = value.As<Napi::Number>().DoubleValue();
  return max > 0 ? static_cast<size_t>(std::min(max, 9e15)) : 0;
}

}  // namespace

Napi::Function RemctlHandle::Define(Napi::Env env) {
  return DefineClass(
      env, "RemctlHandle",
      {
          InstanceMethod<&RemctlHandle::Open>("open"),
          InstanceMethod<&RemctlHandle::Command>("command"),
          InstanceMethod<&RemctlHandle::Output>("output"),
          InstanceMethod<&RemctlHandle::OutputBatch>("outputBatch"),
          InstanceMethod<&RemctlHandle::Noop>("noop"),
          InstanceMethod<&RemctlHandle::Run>("run"),
          InstanceMethod<&RemctlHandle::RunOnce>("runOnce"),
          InstanceMethod<&RemctlHandle::RunSync>("runSync"),
          InstanceMethod<&RemctlHandle::Close>("close"),
          InstanceMethod<&RemctlHandle::Cancel>("cancel"),
          InstanceMethod<&RemctlHandle::Error>("error"),
          InstanceMethod<&RemctlHandle::SetCcache>("setCcache"),
          InstanceMethod<&RemctlHandle::SetSourceIp>("setSourceIp"),
          InstanceMethod<&RemctlHandle::SetTimeout>("setTimeout"),
          InstanceMethod<&RemctlHandle::SetOpenRetries>("setOpenRetries"),
          InstanceAccessor<&RemctlHandle::Closed>("closed"),
      });
}

RemctlHandle::RemctlHandle(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<RemctlHandle>(info), worker_(std::make_shared<Worker>()) {}

RemctlHandle::~RemctlHandle() {
  // Unreachable without remctl_close: end what it is waiting on and let its
  // thread close the connection and go. Never join here: the thread may be
  // blocked in libremctl.
  if (!closed_) {
    worker_->Cancel();
    worker_->Finish(Env(), nullptr);
  }
}

void RemctlHandle::CheckOpen(Napi::Env env) const {
  if (closed_) {
    throw Napi::TypeError::New(env, "r must be an open remctl handle: it was closed");
  }
}

Napi::Value RemctlHandle::Submit(Napi::Env env, std::unique_ptr<PromiseJob> job) {
  Napi::Promise promise = job->promise();
  worker_->Submit(env, std::move(job));
  return promise;
}

Napi::Value RemctlHandle::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  auto target = std::make_shared<TargetHolder>(ToOpenTarget(info[0]));
  Settings settings = settings_;
  return Submit(env, std::make_unique<StatusJob>(
                         env, [target, settings](Connection& connection) {
                           return connection.Open(target->Take(), settings);
                         }));
}

Napi::Value RemctlHandle::Command(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Arguments args = ToArguments(info[0], "command");
  const bool as_strings = info[1].ToBoolean();
  Settings settings = settings_;
  return Submit(env, std::make_unique<StatusJob>(
                         env, [args = std::move(args), as_strings,
                               settings](Connection& connection) {
                           return connection.Command(args, as_strings, settings);
                         }));
}

Napi::Value RemctlHandle::Output(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  return Submit(env, std::make_unique<OutputJob>(env, settings_));
}

Napi::Value RemctlHandle::OutputBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  return Submit(env, std::make_unique<OutputBatchJob>(env, settings_, ToMaxOutput(info[0])));
}

Napi::Value RemctlHandle::Noop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Settings settings = settings_;
  return Submit(env, std::make_unique<StatusJob>(
                         env, [settings](Connection& connection) {
                           return connection.Noop(settings);
                         }));
}

Napi::Value RemctlHandle::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Arguments args = ToArguments(info[0], "command");
  return Submit(env, std::make_unique<RunJob>(env, std::move(args), settings_,
                                              ToMaxOutput(info[1]), nullptr));
}

Napi::Value RemctlHandle::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  closed_ = true;
  auto job = std::make_unique<CloseJob>(env);
  Napi::Promise promise = job->promise();
  worker_->Finish(env, std::move(job));
  return promise;
}

Napi::Value RemctlHandle::RunSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Connection* connection = worker_->idle_connection();
  if (connection == nullptr) {
    throw Napi::Error::New(env, "runSync needs a handle that never ran anything asynchronously");
  }
  TargetHolder target(ToOpenTarget(info[0]));
  Arguments args = ToArguments(info[1], "command");
  closed_ = true;
  RunResult result = RunOnConnection(*connection, target.Take(), args,
                                     settings_, ToMaxOutput(info[2]));
  return ToRunArray(env, std::move(result));
}

Napi::Value RemctlHandle::Cancel(const Napi::CallbackInfo& info) {
  worker_->Cancel();
  return info.Env().Undefined();
}

Napi::Value RemctlHandle::Error(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  return Napi::String::New(env, worker_->last_error);
}

Napi::Value RemctlHandle::SetCcache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (info[0].IsString()) {
    settings_.ccache = info[0].As<Napi::String>().Utf8Value();
  } else {
    settings_.ccache.reset();
  }
  return env.Undefined();
}

Napi::Value RemctlHandle::SetSourceIp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  settings_.source_ip =
      info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  return env.Undefined();
}

Napi::Value RemctlHandle::SetTimeout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  // The JavaScript layer checks the range; the clamp keeps the casts defined
  // whatever arrives.
  const double timeout = std::clamp(info[0].ToNumber().DoubleValue(), -2e6, 2e6);
  if (!(timeout >= 0)) {
    // libremctl's own refusal, kept for remctl_error.
    worker_->last_error = "invalid timeout " + std::to_string(static_cast<long>(timeout));
    return Napi::Boolean::New(env, false);
  }
  settings_.timeout = static_cast<long>(timeout);
  return Napi::Boolean::New(env, true);
}

Napi::Value RemctlHandle::SetOpenRetries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  settings_.open_retries = info[0].ToNumber().Int32Value();
  settings_.open_retry_delay_ms = info[1].ToNumber().Int32Value();
  return env.Undefined();
}

Napi::Value RemctlHandle::Closed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), closed_);
}

Napi::Value CanonicalName(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string host = info[0].As<Napi::String>().Utf8Value();
  addrinfo hints{};
  hints.ai_flags = AI_CANONNAME;
  addrinfo* list = nullptr;
  const int status = getaddrinfo(host.c_str(), nullptr, &hints, &list);
  if (status != 0) {
    throw Napi::Error::New(env, "cannot resolve host " + host + ": " + gai_strerror(status));
  }
  std::string name = list->ai_canonname != nullptr ? list->ai_canonname : host;
  freeaddrinfo(list);
  return Napi::String::New(env, name);
}

Napi::Value RemctlHandle::RunOnce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  auto target = std::make_unique<TargetHolder>(ToOpenTarget(info[0]));
  Arguments args = ToArguments(info[1], "command");
  auto job = std::make_unique<RunJob>(env, std::move(args), settings_,
                                      ToMaxOutput(info[2]), std::move(target));
  Napi::Promise promise = job->promise();
  // The thread ends with this job: a one-shot call holds it no longer.
  closed_ = true;
  worker_->Finish(env, std::move(job));
  return promise;
}

}  // namespace remctl_node
