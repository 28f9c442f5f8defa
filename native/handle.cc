#include "handle.h"

#include <netdb.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "convert.h"

namespace remctl_node {

namespace {

constexpr const char* kNoError = "no error";

// The JavaScript layer checks the range; the clamp keeps the cast defined
// whatever arrives (undefined: 0).
int64_t Milliseconds(const Napi::Value& value) {
  const double ms = value.IsUndefined() ? 0 : value.ToNumber().DoubleValue();
  return static_cast<int64_t>(std::clamp(ms, -2e12, 2e12));
}

// Operations that succeed or fail resolve to undefined, or to the failure
// (its text also kept for remctl_error). Resolving with the failure itself
// means a caller never reads an error that a later operation already replaced.
Napi::Value StatusValue(Napi::Env env, Conn& conn, const Status& status) {
  conn.last_error = status.ok ? kNoError : status.message;
  if (status.ok) return env.Undefined();
  return FailureValue(env, status);
}

// Holds a target whose descriptor (remctl_open_fd) is ours until opened.
class TargetHolder {
 public:
  explicit TargetHolder(OpenTarget target) : target_(std::move(target)) {}
  ~TargetHolder() {
    if (target_.fd >= 0) close(target_.fd);
  }
  TargetHolder(const TargetHolder&) = delete;
  TargetHolder& operator=(const TargetHolder&) = delete;
  OpenTarget Take() {
    OpenTarget taken = target_;
    target_.fd = -1;
    return taken;
  }

 private:
  OpenTarget target_;
};

// What every operation has: the settings it was issued with, and a failure
// from outside (a timeout on the loop, no thread to run it), after which
// Advance reports it done.
class CallOp : public Op {
 public:
  CallOp(Napi::Env env, Napi::Value settle, Settings settings)
      : Op(env, settle), settings_(std::move(settings)) {}
  int64_t idle_timeout_ms() const override { return settings_.idle_timeout_ms; }
  void Fail(Status status) override {
    failed_ = true;
    failure_ = std::move(status);
  }

 protected:
  Settings settings_;
  bool failed_ = false;
  Status failure_;
};

// Waits for the next token, or says how to: kRead while the socket can hold
// the whole of it, kBlock (a thread reads it as it arrives) when it cannot.
Step AwaitToken(Connection& connection) {
  const Readiness ready = connection.TokenReadiness();
  if (ready.ready) return Step::kDone;
  return connection.WaitFor(ready.need) ? Step::kRead : Step::kBlock;
}

// open, command and noop: resolve to undefined, or to the failure.
class StatusOp : public CallOp {
 public:
  enum class Kind { kOpen, kCommand, kNoop };
  StatusOp(Napi::Env env, Napi::Value settle, Kind kind, Settings settings)
      : CallOp(env, settle, std::move(settings)), kind_(kind) {}
  static std::unique_ptr<StatusOp> Open(Napi::Env env, Napi::Value settle, OpenTarget target,
                                        Settings settings) {
    auto op = std::make_unique<StatusOp>(env, settle, Kind::kOpen, std::move(settings));
    op->target_ = std::make_unique<TargetHolder>(std::move(target));
    return op;
  }
  static std::unique_ptr<StatusOp> Command(Napi::Env env, Napi::Value settle, Arguments args,
                                           bool as_strings, Settings settings) {
    auto op = std::make_unique<StatusOp>(env, settle, Kind::kCommand, std::move(settings));
    op->args_ = std::move(args);
    op->as_strings_ = as_strings;
    return op;
  }

  Step Advance(Conn& conn) override {
    if (failed_) status_ = failure_;
    if (failed_ || ran_) return Step::kDone;
    Connection& connection = conn.connection();
    switch (kind_) {
      case Kind::kOpen:
        if (!connection.cancelled()) return Step::kBlock;
        status_ = CancelledStatus();
        break;
      case Kind::kCommand:
        if (!connection.CommandCannotBlock(args_)) return Step::kBlock;
        status_ = connection.Command(args_, as_strings_, settings_);
        break;
      case Kind::kNoop:
        // A round trip to the server: libremctl sends and waits in one call.
        if (!connection.NoopFailsNow()) {
          alive_ = connection.CheckAlive();
          return Step::kBlock;
        }
        status_ = connection.Noop(settings_);
        break;
    }
    ran_ = true;
    return Step::kDone;
  }
  void Block(Connection& connection) override {
    switch (kind_) {
      case Kind::kOpen:
        status_ = connection.Open(target_->Take(), settings_);
        break;
      case Kind::kCommand:
        status_ = connection.Command(args_, as_strings_, settings_);
        break;
      case Kind::kNoop:
        status_ = connection.Noop(settings_);
        break;
    }
    ran_ = true;
  }
  Napi::Value Result(Napi::Env env, Conn& conn) override {
    return StatusValue(env, conn, status_);
  }
  // A noop on a live connection reads and writes the socket it has.
  bool reconnects() const override { return kind_ != Kind::kNoop || !alive_; }

 private:
  Kind kind_;
  bool alive_ = false;
  std::unique_ptr<TargetHolder> target_;
  Arguments args_;
  bool as_strings_ = false;
  bool ran_ = false;
  Status status_;
};

class OutputOp : public CallOp {
 public:
  using CallOp::CallOp;
  Step Advance(Conn& conn) override {
    if (failed_) result_.status = failure_;
    if (failed_ || ran_) return Step::kDone;
    const Step wait = AwaitToken(conn.connection());
    if (wait != Step::kDone) return wait;
    Block(conn.connection());
    return Step::kDone;
  }
  void Block(Connection& connection) override {
    result_ = connection.Output(settings_);
    ran_ = true;
  }
  bool reconnects() const override { return false; }
  Napi::Value Result(Napi::Env env, Conn& conn) override {
    if (!result_.status.ok) return StatusValue(env, conn, result_.status);
    conn.last_error = kNoError;
    Napi::Array token = Napi::Array::New(env, 3);
    uint32_t at = 0;
    AppendToken(env, token, at, std::move(result_.token));
    return token;
  }

 private:
  bool ran_ = false;
  OutputResult result_;
};

// The next token and the ones after it that have already arrived, up to
// about max_bytes: the streams take them in one crossing, not one a token.
// Never waits for a token beyond the first. Resolves to the tokens, followed
// by the failure if reading failed.
class BatchOp : public CallOp {
 public:
  BatchOp(Napi::Env env, Napi::Value settle, Settings settings, size_t max_bytes)
      : CallOp(env, settle, std::move(settings)), max_bytes_(max_bytes) {}
  Step Advance(Conn& conn) override {
    if (failed_) {
      status_ = failure_;
      return Step::kDone;
    }
    Connection& connection = conn.connection();
    while (!ended_ && (tokens_.empty() || bytes_ < max_bytes_)) {
      const Step wait = AwaitToken(connection);
      if (wait != Step::kDone) {
        if (!tokens_.empty()) break;
        return wait;
      }
      Take(connection.Output(settings_));
    }
    return Step::kDone;
  }
  void Block(Connection& connection) override { Take(connection.Output(settings_)); }
  bool reconnects() const override { return false; }
  Napi::Value Result(Napi::Env env, Conn& conn) override {
    conn.last_error = status_.ok ? kNoError : status_.message;
    const uint32_t count = static_cast<uint32_t>(tokens_.size());
    Napi::Array tokens = Napi::Array::New(env, 3 * count + (status_.ok ? 0 : 1));
    uint32_t at = 0;
    for (Token& token : tokens_) AppendToken(env, tokens, at, std::move(token));
    if (!status_.ok) tokens.Set(at, FailureValue(env, status_));
    return tokens;
  }

 private:
  void Take(OutputResult&& next) {
    if (!next.status.ok) {
      status_ = std::move(next.status);
      ended_ = true;
      return;
    }
    if (next.token.type != Token::Type::kOutput) ended_ = true;
    bytes_ += next.token.data.size();
    tokens_.push_back(std::move(next.token));
  }

  size_t max_bytes_;
  size_t bytes_ = 0;
  bool ended_ = false;
  Status status_;
  std::vector<Token> tokens_;
};

// ok, failure, stdout, stderr, status, exceeded, errorCode, errorMessage;
// stdout and stderr as ArrayBuffers, or undefined when empty. As settle's
// arguments or an array's elements, not named properties, which cost a
// string lookup and a shape change each; lib/addon.ts makes the object.
void RunValues(Napi::Env env, RunResult&& result, std::vector<napi_value>& values) {
  const napi_value undefined = env.Undefined();
  values.push_back(Napi::Boolean::New(env, result.status.ok));
  values.push_back(result.status.ok ? undefined : FailureValue(env, result.status));
  values.push_back(ToBytes(env, std::move(result.out)));
  values.push_back(ToBytes(env, std::move(result.err)));
  values.push_back(Napi::Number::New(env, result.exit_status));
  values.push_back(Napi::Boolean::New(env, result.exceeded));
  values.push_back(result.protocol_error ? Napi::Number::New(env, result.error_code) : undefined);
  values.push_back(result.protocol_error ? Napi::String::New(env, result.error_message) : undefined);
}

Napi::Array ToRunArray(Napi::Env env, RunResult&& result) {
  std::vector<napi_value> values;
  values.reserve(8);
  RunValues(env, std::move(result), values);
  Napi::Array array = Napi::Array::New(env, values.size());
  for (uint32_t i = 0; i < values.size(); i++) array.Set(i, values[i]);
  return array;
}

// One command and all its output, on an open connection or, for the
// one-shot call, on a connection opened first and closed after. Each token
// is read on the loop as soon as it has arrived whole.
class RunOp : public CallOp {
 public:
  RunOp(Napi::Env env, Napi::Value settle, Arguments args, Settings settings,
        size_t max_output, std::unique_ptr<TargetHolder> open_first)
      : CallOp(env, settle, std::move(settings)),
        args_(std::move(args)),
        collector_(max_output),
        open_first_(std::move(open_first)),
        phase_(open_first_ ? Phase::kOpen : Phase::kSend) {}

  Step Advance(Conn& conn) override {
    Connection& connection = conn.connection();
    if (failed_) {
      result_.status = failure_;
      return Finish(conn);
    }
    for (;;) {
      switch (phase_) {
        case Phase::kOpen:
          if (!connection.cancelled()) return Step::kBlock;
          result_.status = CancelledStatus();
          return Finish(conn);
        case Phase::kSend:
          if (!connection.CommandCannotBlock(args_)) return Step::kBlock;
          Send(connection);
          fresh_ = phase_ == Phase::kRead;
          break;
        case Phase::kRead: {
          // Just sent: the answer cannot be there yet, and the poll says
          // when it is.
          if (fresh_) {
            fresh_ = false;
            if (connection.WaitFor(1)) return Step::kRead;
          }
          const Step wait = AwaitToken(connection);
          if (wait != Step::kDone) return wait;
          ReadOne(connection);
          break;
        }
        case Phase::kEnded:
          return Finish(conn);
      }
    }
  }
  void Block(Connection& connection) override {
    switch (phase_) {
      case Phase::kOpen:
        result_.status = connection.Open(open_first_->Take(), settings_);
        phase_ = result_.status.ok ? Phase::kSend : Phase::kEnded;
        // Sent from here, while the loop is still to hear of the open: the
        // command is on its way a wake-up of the loop sooner. Command()
        // checks for a cancel last, as on the loop; the loop then peeks
        // before it waits, as the answer may be there by then.
        if (phase_ == Phase::kSend && connection.CommandCannotBlock(args_)) Send(connection);
        break;
      case Phase::kSend:
        Send(connection);
        break;
      case Phase::kRead:
        ReadOne(connection);
        break;
      case Phase::kEnded:
        break;
    }
  }
  bool reconnects() const override { return phase_ != Phase::kRead; }
  void Values(Napi::Env env, Conn& conn, std::vector<napi_value>& values) override {
    conn.last_error = result_.status.ok ? kNoError : result_.status.message;
    RunValues(env, std::move(result_), values);
  }

 private:
  enum class Phase { kOpen, kSend, kRead, kEnded };

  void Send(Connection& connection) {
    result_.status = connection.Command(args_, false, settings_);
    phase_ = result_.status.ok ? Phase::kRead : Phase::kEnded;
  }
  // Straight from libremctl's token into the result: one copy of the data.
  void ReadOne(Connection& connection) {
    struct remctl_output* output = connection.ReadOutput(settings_, &result_.status);
    if (output == nullptr || !collector_.Take(output, result_)) phase_ = Phase::kEnded;
  }
  // On the loop's thread, which alone may close a socket it polls.
  Step Finish(Conn& conn) {
    if (result_.exceeded) {
      // The rest of the output is still on its way: the connection cannot
      // carry another command, so it ends here.
      conn.Unwatch();
      conn.connection().Teardown();
    }
    if (open_first_) {
      conn.Unwatch();
      conn.connection().Close();
    }
    phase_ = Phase::kEnded;
    return Step::kDone;
  }

  Arguments args_;
  RunCollector collector_;
  std::unique_ptr<TargetHolder> open_first_;
  Phase phase_;
  bool fresh_ = false;
  RunResult result_;
};

class CloseOp : public Op {
 public:
  using Op::Op;
  Step Advance(Conn& conn) override {
    conn.Unwatch();
    conn.connection().Close();
    return Step::kDone;
  }
  Napi::Value Result(Napi::Env env, Conn& conn) override {
    conn.last_error = kNoError;
    return env.Undefined();
  }
  void Fail(Status) override {}
  int64_t idle_timeout_ms() const override { return 0; }
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
          InstanceMethod<&RemctlHandle::Open>("_open"),
          InstanceMethod<&RemctlHandle::Command>("_command"),
          InstanceMethod<&RemctlHandle::Output>("_output"),
          InstanceMethod<&RemctlHandle::OutputBatch>("_outputBatch"),
          InstanceMethod<&RemctlHandle::Noop>("_noop"),
          InstanceMethod<&RemctlHandle::Run>("_run"),
          InstanceMethod<&RemctlHandle::RunOnce>("_runOnce"),
          InstanceMethod<&RemctlHandle::RunSync>("runSync"),
          InstanceMethod<&RemctlHandle::Close>("_close"),
          InstanceMethod<&RemctlHandle::Cancel>("cancel"),
          InstanceMethod<&RemctlHandle::Error>("error"),
          InstanceMethod<&RemctlHandle::SetCcache>("setCcache"),
          InstanceMethod<&RemctlHandle::SetSourceIp>("setSourceIp"),
          InstanceMethod<&RemctlHandle::SetIdleTimeout>("setIdleTimeout"),
          InstanceMethod<&RemctlHandle::SetConnectTimeout>("setConnectTimeout"),
          InstanceMethod<&RemctlHandle::TrackCredentials>("trackCredentials"),
          InstanceMethod<&RemctlHandle::SetOpenRetries>("setOpenRetries"),
          InstanceMethod<&RemctlHandle::SetSocketBuffers>("setSocketBuffers"),
          InstanceAccessor<&RemctlHandle::Closed>("closed"),
          InstanceAccessor<&RemctlHandle::OpenEnded>("openEnded"),
          InstanceAccessor<&RemctlHandle::CredentialsExpire>("credentialsExpire"),
          InstanceAccessor<&RemctlHandle::Opens>("opens"),
          InstanceAccessor<&RemctlHandle::ServerClosed>("serverClosed"),
      });
}

RemctlHandle::RemctlHandle(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<RemctlHandle>(info),
      conn_(std::make_shared<Conn>(Engine::Of(info.Env()))) {}

RemctlHandle::~RemctlHandle() {
  // Unreachable without remctl_close: what it was doing ends, and what it
  // had queued settles with "operation cancelled".
  if (!closed_) conn_->Abandon();
}

void RemctlHandle::CheckOpen(Napi::Env env) const {
  if (closed_) {
    throw Napi::TypeError::New(env, "r must be an open remctl handle: it was closed");
  }
}

void RemctlHandle::Submit(std::unique_ptr<Op> op) {
  used_ = true;
  conn_->Enqueue(std::move(op));
}

namespace {

// Every asynchronous method takes, last, the function that settles its
// Promise (see lib/addon.ts).
Napi::Value SettleArgument(const Napi::CallbackInfo& info) {
  return info.Length() > 0 ? info[info.Length() - 1] : info.Env().Undefined();
}

}  // namespace

Napi::Value RemctlHandle::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Submit(StatusOp::Open(env, SettleArgument(info), ToOpenTarget(info[0]), settings_));
  return env.Undefined();
}

Napi::Value RemctlHandle::Command(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Arguments args = ToArguments(info[0], "command");
  Submit(StatusOp::Command(env, SettleArgument(info), std::move(args), info[1].ToBoolean(), settings_));
  return env.Undefined();
}

Napi::Value RemctlHandle::Output(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Submit(std::make_unique<OutputOp>(env, SettleArgument(info), settings_));
  return env.Undefined();
}

Napi::Value RemctlHandle::OutputBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Submit(std::make_unique<BatchOp>(env, SettleArgument(info), settings_, ToMaxOutput(info[0])));
  return env.Undefined();
}

Napi::Value RemctlHandle::Noop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Submit(std::make_unique<StatusOp>(env, SettleArgument(info), StatusOp::Kind::kNoop, settings_));
  return env.Undefined();
}

Napi::Value RemctlHandle::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Arguments args = ToArguments(info[0], "command");
  Submit(std::make_unique<RunOp>(env, SettleArgument(info), std::move(args), settings_,
                                 ToMaxOutput(info[1]), nullptr));
  return env.Undefined();
}

Napi::Value RemctlHandle::RunOnce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  auto target = std::make_unique<TargetHolder>(ToOpenTarget(info[0]));
  Arguments args = ToArguments(info[1], "command");
  auto op = std::make_unique<RunOp>(env, SettleArgument(info), std::move(args), settings_,
                                    ToMaxOutput(info[2]), std::move(target));
  // A one-shot call's handle is done with once it is made.
  closed_ = true;
  Submit(std::move(op));
  return env.Undefined();
}

Napi::Value RemctlHandle::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  auto op = std::make_unique<CloseOp>(env, SettleArgument(info));
  closed_ = true;
  Submit(std::move(op));
  return env.Undefined();
}

Napi::Value RemctlHandle::RunSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (used_) {
    throw Napi::Error::New(env, "runSync needs a handle that never ran anything asynchronously");
  }
  TargetHolder target(ToOpenTarget(info[0]));
  Arguments args = ToArguments(info[1], "command");
  const size_t max_output = ToMaxOutput(info[2]);
  const int64_t timeout_ms = Milliseconds(info[3]);
  closed_ = true;
  used_ = true;
  RunResult result = RunBlocking(target.Take(), args, settings_, max_output, std::max<int64_t>(timeout_ms, 0));
  return ToRunArray(env, std::move(result));
}

Napi::Value RemctlHandle::Cancel(const Napi::CallbackInfo& info) {
  conn_->Cancel();
  return info.Env().Undefined();
}

Napi::Value RemctlHandle::Error(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  return Napi::String::New(env, conn_->last_error);
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

Napi::Value RemctlHandle::SetIdleTimeout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  const int64_t ms = Milliseconds(info[0]);
  if (ms < 0) {
    // libremctl's own refusal (of seconds), kept for remctl_error.
    conn_->last_error = "invalid timeout " + std::to_string(ms / 1000);
    return Napi::Boolean::New(env, false);
  }
  settings_.idle_timeout_ms = ms;
  return Napi::Boolean::New(env, true);
}

Napi::Value RemctlHandle::TrackCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  settings_.track_credentials = true;
  return env.Undefined();
}

Napi::Value RemctlHandle::SetConnectTimeout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  settings_.connect_timeout_ms = std::max<int64_t>(Milliseconds(info[0]), 0);
  return env.Undefined();
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

Napi::Value RemctlHandle::CredentialsExpire(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(conn_->connection().credentials_expire_ms()));
}

Napi::Value RemctlHandle::Opens(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(conn_->connection().opens()));
}

// Asked between operations only: one under way may be reopening it.
Napi::Value RemctlHandle::ServerClosed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !closed_ && conn_->idle() && conn_->connection().ServerClosed());
}

Napi::Value RemctlHandle::OpenEnded(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), conn_->connection().open_ended());
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

Napi::Value RemctlHandle::SetSocketBuffers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  settings_.receive_buffer = info[0].ToNumber().Int32Value();
  settings_.send_buffer = info[1].ToNumber().Int32Value();
  return env.Undefined();
}

Napi::Value Threads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto [threads, idle] = Engine::Of(env).threads();
  Napi::Object counts = Napi::Object::New(env);
  counts.Set("threads", static_cast<double>(threads));
  counts.Set("idle", static_cast<double>(idle));
  return counts;
}

}  // namespace remctl_node
