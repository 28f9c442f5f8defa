#include "connection.h"

#include <remctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <system_error>
#include <utility>

#include "credentials.h"
#include "thread.h"

namespace remctl_node {

namespace {

// libremctl reports a socket we shut down for inactivity as end of file or a
// broken pipe; say what really happened, in its own wording.
std::string AsTimeout(const std::string& message) {
  // Only what failed on the socket we shut down: a GSS-API error (a KDC
  // that did not answer, say) keeps its own words.
  if (message.rfind("error sending", 0) != 0 && message.rfind("error receiving", 0) != 0) {
    return message;
  }
  size_t colon = message.rfind(": ");
  if (colon == std::string::npos) return "timed out";
  return message.substr(0, colon) + ": timed out";
}

// The protocol sends one byte; libremctl reads it as a signed char, so a
// command killed by a signal (status 255) would read -1.
int StatusByte(const struct remctl_output* output) { return output->status & 0xff; }

// The wait before retry number attempt + 1: the first delay doubled each
// time, but never more than kMaxRetryDelayMs (or the first delay, if that is
// longer), so that no shift overflows and no retry waits for days.
constexpr int64_t kMaxRetryDelayMs = 10000;

}  // namespace

const char* FailureName(Failure failure) {
  switch (failure) {
    case Failure::kNone: return "none";
    case Failure::kConnect: return "connect";
    case Failure::kAuth: return "auth";
    case Failure::kTimeout: return "timeout";
    case Failure::kConnectionLost: return "connectionLost";
    case Failure::kBadResponse: return "badResponse";
    case Failure::kNotOpen: return "notOpen";
    case Failure::kCancelled: return "cancelled";
    case Failure::kUnsupported: return "unsupported";
    case Failure::kSystem: return "system";
  }
  return "none";
}

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t Shorter(int64_t a, int64_t b) {
  if (a <= 0) return b;
  if (b <= 0) return a;
  return std::min(a, b);
}

}  // namespace

int64_t ConnectBudgetMs(const Settings& settings) {
  return Shorter(settings.connect_timeout_ms, settings.idle_timeout_ms);
}

int64_t RetryDelayMs(long first_ms, long attempt) {
  const int64_t first = std::max<long>(first_ms, 0);
  const int64_t cap = std::max(first, kMaxRetryDelayMs);
  int64_t delay = first;
  for (long i = 0; i < attempt && delay < cap; i++) delay *= 2;
  return std::min(delay, cap);
}

namespace {

// A blocking read or write that failed this close to its timeout after the
// server's last activity failed because of it.
constexpr int64_t kTimeoutSlackMs = 200;

}  // namespace

bool RunCollector::Take(const struct remctl_output* output, RunResult& result) {
  switch (output->type) {
    case REMCTL_OUT_OUTPUT: {
      if (max_output_ != 0 &&
          result.out.size() + result.err.size() + output->length > max_output_) {
        result.exceeded = true;
        return false;
      }
      ByteBuffer& into = output->stream == 2 ? result.err : result.out;
      if (!into.Append(output->data, output->length)) {
        result.status = {false, "cannot allocate memory", Failure::kSystem, {ENOMEM, "", "malloc", "", 0}};
        return false;
      }
      return true;
    }
    case REMCTL_OUT_STATUS:
      result.exit_status = StatusByte(output);
      return false;
    case REMCTL_OUT_ERROR:
      result.protocol_error = true;
      result.error_code = output->error;
      result.error_message.assign(output->data ? output->data : "", output->length);
      return false;
    case REMCTL_OUT_DONE:
    default:
      return false;
  }
}

ByteBuffer::ByteBuffer(ByteBuffer&& other) noexcept
    : data_(other.data_), size_(other.size_), capacity_(other.capacity_) {
  other.data_ = nullptr;
  other.size_ = other.capacity_ = 0;
}

ByteBuffer& ByteBuffer::operator=(ByteBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = other.data_;
    size_ = other.size_;
    capacity_ = other.capacity_;
    other.data_ = nullptr;
    other.size_ = other.capacity_ = 0;
  }
  return *this;
}

bool ByteBuffer::Append(const char* data, size_t length) {
  if (length == 0) return true;
  if (size_ + length > capacity_) {
    size_t capacity = capacity_ ? capacity_ : 4096;
    while (capacity < size_ + length) capacity *= 2;
    char* grown = static_cast<char*>(std::realloc(data_, capacity));
    if (grown == nullptr) return false;
    data_ = grown;
    capacity_ = capacity;
  }
  std::memcpy(data_ + size_, data, length);
  size_ += length;
  return true;
}

char* ByteBuffer::Release() {
  char* data = data_;
  data_ = nullptr;
  size_ = capacity_ = 0;
  return data;
}

Connection::Connection()
    : jitter_seed_(static_cast<unsigned>(reinterpret_cast<uintptr_t>(this))) {}

Connection::~Connection() { Close(); }

void Connection::Cancel() {
  cancelled_.store(true);
  std::lock_guard<std::mutex> lock(cancel_mutex_);
  if (cancel_.valid()) SignalEventFd(cancel_.get());
  if (link_) link_->Shutdown();
}

Status CancelledStatus() { return {false, "operation cancelled", Failure::kCancelled, {}}; }

Status Connection::Cancelled() { return CancelledStatus(); }

void Connection::SetLink(std::unique_ptr<Link> link) {
  std::unique_ptr<Link> old;
  {
    std::lock_guard<std::mutex> lock(cancel_mutex_);
    old = std::move(link_);
    link_ = std::move(link);
  }
}

Status Connection::Fail(Failure failure, std::string message, SystemError system) {
  return {false, std::move(message), failure, std::move(system)};
}

Status Connection::LibraryFailure(const char* fallback, Step step) {
  std::string message = LibraryError(fallback);
  return Fail(Classify(step), std::move(message));
}

// libremctl says only that a call failed; the socket under it says why.
Failure Connection::Classify(Step step) const {
  if (cancelled()) return Failure::kCancelled;
  // A version 1 connection runs on libremctl's own socket, which we cannot see.
  if (!link_) return step == Step::kAuthenticate ? Failure::kAuth : Failure::kConnectionLost;
  if (link_->timed_out()) return Failure::kTimeout;
  // libremctl reads whole tokens and nothing more: bytes left behind mean it
  // gave up on one in the middle, which only a token that is not the
  // protocol's makes it do.
  if (link_->bad_framing() || link_->Unread() > 0) return Failure::kBadResponse;
  if (link_->PeerClosed()) {
    // A server that answered our credentials and then hung up refused them;
    // one that hung up before saying anything dropped us (a busy remctld).
    if (step == Step::kAuthenticate && link_->BytesReceived() > 0) return Failure::kAuth;
    return Failure::kConnectionLost;
  }
  switch (step) {
    case Step::kAuthenticate: return Failure::kAuth;
    // The socket is fine, so GSS-API could not wrap the command: the
    // context expired, say.
    case Step::kSend: return Failure::kAuth;
    case Step::kReceive: return Failure::kBadResponse;
  }
  return Failure::kBadResponse;
}

int64_t Connection::SocketTimeoutMs(const Settings& settings) const {
  if (deadline_ms_ == 0) return settings.idle_timeout_ms;
  return Shorter(settings.idle_timeout_ms, std::max<int64_t>(deadline_ms_ - NowMs(), 1));
}

std::string Connection::CallTimedOut() const {
  return "timed out after " + std::to_string(call_timeout_ms_) + " ms: the call's timeout";
}

bool Connection::AwaitOutput(const Settings& settings) {
  const int64_t left = deadline_ms_ - NowMs();
  if (left > 0 && link_->WaitReadable(Shorter(settings.idle_timeout_ms, left))) return true;
  // The server was silent for the idle timeout, or the call's ran out.
  link_->TimeOut();
  return false;
}

void Connection::ApplySocketTimeout(const Settings& settings) {
  settings_idle_ms_ = settings.idle_timeout_ms;
  if (link_) link_->SetTimeout(SocketTimeoutMs(settings));
}

std::string Connection::LibraryError(const char* fallback) {
  std::string message = r_ != nullptr ? remctl_error(r_) : fallback;
  // The call's whole timeout ran out (remctlSync, whose socket timeouts
  // count down to it): say so, in place of what the socket said.
  if (link_ && deadline_ms_ != 0 && !cancelled() && NowMs() >= deadline_ms_ - kTimeoutSlackMs) {
    if (!link_->timed_out()) link_->TimeOut();
    return CallTimedOut();
  }
  // A blocking read or write gives up after the socket's timeout of silence
  // (SO_RCVTIMEO, SO_SNDTIMEO); the kernel's clock says whether that is why.
  if (link_ && socket_timeouts_ && !link_->timed_out() && settings_idle_ms_ > 0 &&
      !link_->PeerClosed() && link_->IdleMs() >= settings_idle_ms_ - kTimeoutSlackMs) {
    link_->TimeOut();
  }
  if (link_ && link_->timed_out()) return AsTimeout(message);
  return message;
}

Readiness Connection::TokenReadiness() const {
  if (cancelled() || r_ == nullptr || !opened_ || !expecting_) return {true, 0};
  // Protocol version 1 runs on libremctl's own socket, which only a thread
  // of ours reads (WaitFor refuses the loop).
  if (!link_) return {false, 1};
  return link_->TokenReadiness();
}

bool Connection::CommandCannotBlock(const Arguments& args) const {
  if (cancelled()) return true;
  if (version1_) return !opened_;
  if (!CheckAlive()) return !Reopenable();
  // The message, cut into tokens of TOKEN_MAX_DATA, each with its header,
  // GSS-API's wrapping (under 64 bytes with Kerberos) and the 5-byte framing.
  constexpr size_t kTokenData = 64 * 1024;
  constexpr size_t kPerToken = 256;
  size_t length = 4 + args.bytes.size() + 4 * args.lengths.size();
  const size_t tokens = length / (kTokenData - 8) + 1;
  return link_->CanSend(length + tokens * kPerToken);
}

bool Connection::ServerClosed() const {
  if (cancelled() || (version1_ && opened_)) return false;
  return opened_ ? !CheckAlive() : Reopenable();
}

bool Connection::CheckAlive() const {
  known_alive_ = opened_ && link_ && link_->alive();
  return known_alive_;
}

void Connection::SetBlocking(bool blocking) {
  blocking_ = blocking;
  if (link_) link_->SetBlocking(blocking);
}

void Connection::TimeOut() {
  if (link_) link_->TimeOut();
}

int64_t Connection::TimeOutIfIdle(int64_t timeout_ms) {
  std::lock_guard<std::mutex> lock(cancel_mutex_);
  // Connecting, or between connections: the connect has its own timeout.
  if (!link_) return timeout_ms;
  if (link_->timed_out()) return 0;
  const int64_t idle = link_->IdleMs();
  if (idle < timeout_ms) return timeout_ms - idle;
  link_->TimeOut();
  return 0;
}

void Connection::Teardown() {
  Disconnect();
  if (target_.fd >= 0) {
    Fd(target_.fd).Reset();
    target_.fd = -1;
  }
}

void Connection::Disconnect() {
  expecting_ = false;
  version1_ = false;
  if (r_ != nullptr) {
    // libremctl's goodbye gives up at once rather than wait on a server
    // that stopped reading.
    if (link_) link_->StopBlocking();
    remctl_close(r_);
    r_ = nullptr;
  }
  SetLink(nullptr);
  opened_ = false;
}

bool Connection::Reopenable() const {
  return target_.kind == OpenTarget::Kind::kHost && !target_.host.empty();
}

// Before a command: a connection the server closed since the last one is
// reopened, as libremctl does for connections it opened by host name.
// JavaScript's Remctl asks first (ServerClosed) and reopens it itself, so
// that the reopen is traced; this is for the C-named layer, and for a close
// that comes between the two looks.
Status Connection::EnsureConnected(const Settings& settings) {
  const bool known_alive = known_alive_;
  known_alive_ = false;
  // libremctl reopens a version 1 connection for each command itself.
  if (version1_ && opened_) return {};
  if (opened_ && link_ && (known_alive || link_->alive())) return {};
  // As libremctl: a connection opened by host name is reopened, also when
  // the last attempt to reopen it failed.
  if (!Reopenable()) {
    return opened_ ? Status{} : Fail(Failure::kNotOpen, "no connection open");
  }
  OpenTarget target = target_;
  return Open(std::move(target), settings);
}

Status Connection::Open(OpenTarget target, const Settings& settings) {
  open_ended_.store(false);
  credentials_expire_ms_.store(-1);
  Status status = OpenAttempts(std::move(target), settings);
  // Asked after the handshake, on the thread that did it: the ticket cache
  // then holds the service ticket it used.
  if (status.ok && settings.track_credentials) {
    const int64_t lifetime = CredentialsLifetimeSeconds(settings.ccache);
    if (lifetime >= 0) {
      const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
      credentials_expire_ms_.store(now + lifetime * 1000);
    }
  }
  if (status.ok) opens_.fetch_add(1);
  open_ended_.store(true);
  return status;
}

Status Connection::OpenAttempts(OpenTarget target, const Settings& settings) {
  Teardown();
  if (cancelled()) {
    if (target.fd >= 0) Fd(target.fd).Reset();
    return Cancelled();
  }
  {
    // What a cancel interrupts while connecting or waiting to retry: held
    // only while opening, so an open connection costs its socket alone.
    std::lock_guard<std::mutex> lock(cancel_mutex_);
    cancel_ = MakeEventFd();
    if (cancel_.valid() && cancelled()) SignalEventFd(cancel_.get());
  }
  if (!cancel_.valid()) {
    const int number = errno;
    return Fail(Failure::kSystem, std::string("cannot create eventfd: ") + strerror(number),
                {number, "", "eventfd", "", 0});
  }
  target_ = std::move(target);
  Status status;
  for (long attempt = 0;; attempt++) {
    status = OpenOnce(settings);
    if (status.ok || attempt >= settings.open_retries || !RetryableOpenFailure()) break;
    const int64_t delay = RetryDelayMs(settings.open_retry_delay_ms, attempt);
    const int64_t jitter = delay > 1 ? rand_r(&jitter_seed_) % (delay / 2 + 1) : 0;
    if (WaitEventFd(cancel_.get(), static_cast<long>(delay + jitter))) break;
  }
  std::lock_guard<std::mutex> lock(cancel_mutex_);
  cancel_.Reset();
  return status;
}

// Only a connection the server dropped during authentication is worth
// another try: not a timeout, not a cancel, not a descriptor we were given.
bool Connection::RetryableOpenFailure() {
  return link_ && link_->PeerClosed() && !link_->timed_out() &&
         target_.kind != OpenTarget::Kind::kFd && !cancelled();
}

// A fresh `struct remctl` in place of the last, with the ticket cache set.
Status Connection::NewLibraryHandle(const Settings& settings) {
  Disconnect();
  r_ = remctl_new();
  if (r_ == nullptr) return Fail(Failure::kSystem, "cannot allocate memory", {ENOMEM, "", "malloc", "", 0});
  if (settings.ccache && !remctl_set_ccache(r_, settings.ccache->c_str())) {
    return Fail(Failure::kAuth, LibraryError("cannot set ticket cache"));
  }
  return {};
}

Status Connection::OpenOnce(const Settings& settings) {
  Status created = NewLibraryHandle(settings);
  if (!created.ok) return created;

  ConnectError error;
  Fd server;
  switch (target_.kind) {
    case OpenTarget::Kind::kHost:
      if (target_.port != 0) {
        server = ConnectHost(target_.host, target_.port, settings.source_ip,
                             ConnectBudgetMs(settings), cancel_.get(), &error);
      } else {
        // As remctl_open: the registered port, then the legacy one, and the
        // first error is the one worth reporting. Only a refusal is worth the
        // legacy port: not a cancel, a timeout, or a name that did not resolve.
        server = ConnectHost(target_.host, REMCTL_PORT, settings.source_ip,
                             ConnectBudgetMs(settings), cancel_.get(), &error);
        // Not after the kernel gave up on a silent address (ETIMEDOUT): the
        // legacy port would only wait as long again.
        if (!server.valid() && error.failure == ConnectFailure::kUnreachable &&
            error.system.number != ETIMEDOUT && !cancelled()) {
          ConnectError legacy_error;
          server = ConnectHost(target_.host, REMCTL_PORT_OLD,
                               settings.source_ip, ConnectBudgetMs(settings),
                               cancel_.get(), &legacy_error);
        }
      }
      break;
    case OpenTarget::Kind::kAddresses:
      server = ConnectAddresses(target_.addresses, settings.source_ip,
                                ConnectBudgetMs(settings), cancel_.get(), &error);
      break;
    case OpenTarget::Kind::kFd:
      server = Fd(target_.fd);
      target_.fd = -1;
      break;
  }
  if (!server.valid()) {
    if (cancelled() || error.failure == ConnectFailure::kCancel) return Cancelled();
    // Out of descriptors or buffers is this process's trouble, not the server's.
    const Failure failure = error.failure == ConnectFailure::kTimeout ? Failure::kTimeout
                            : error.system.syscall == "socket"        ? Failure::kSystem
                                                                      : Failure::kConnect;
    return Fail(failure, std::move(error.message), std::move(error.system));
  }
  if (settings.receive_buffer > 0) {
    setsockopt(server.get(), SOL_SOCKET, SO_RCVBUF, &settings.receive_buffer, sizeof(int));
  }
  if (settings.send_buffer > 0) {
    setsockopt(server.get(), SOL_SOCKET, SO_SNDBUF, &settings.send_buffer, sizeof(int));
  }

  int lib_fd = -1;
  SystemError setup;
  std::unique_ptr<Link> link = Link::Start(std::move(server), &lib_fd, &setup);
  if (!link) {
    std::string message = "cannot set up socket: " + std::string(strerror(setup.number));
    return Fail(Failure::kSystem, std::move(message), std::move(setup));
  }
  // libremctl's duplicate is ours to close until remctl_open_fd takes it.
  Fd library_socket(lib_fd);
  blocking_ = true;
  SetLink(std::move(link));
  if (socket_timeouts_) ApplySocketTimeout(settings);
  // A cancel that came while connecting found no link to shut down.
  if (cancelled()) return Cancelled();
  const char* host = target_.host.empty() ? nullptr : target_.host.c_str();
  const char* principal =
      target_.principal ? target_.principal->c_str() : nullptr;
  // From here on libremctl closes it, whether the open succeeds or not.
  const bool ok = remctl_open_fd(r_, host, library_socket.Release(), principal) != 0;
  if (!ok) return LibraryFailure("cannot open connection", Step::kAuthenticate);
  opened_ = true;
  if (target_.kind == OpenTarget::Kind::kHost && SpeaksVersion1()) return OpenVersion1(settings);
  return {};
}

// Right after an open, remctl_output has nothing to read under protocol
// version 2 and returns REMCTL_OUT_DONE at once; under version 1 it reads
// the socket, which (made non-blocking for this) has nothing either, and
// fails. The server said which it speaks during the handshake, and this is
// how libremctl tells.
bool Connection::SpeaksVersion1() {
  link_->SetBlocking(false);
  const bool done = remctl_output(r_) != nullptr;
  link_->SetBlocking(blocking_);
  return !done;
}

// A version 1 server closes the connection after each command, and
// libremctl reopens it for the next, but only a connection it opened itself
// by host name: so such a server gets libremctl's remctl_open, with its own
// socket, timeout and port fallback, as the C client does. Every call on it
// then runs on a thread of ours, and an abort cannot interrupt one that is
// under way (nothing of ours is left to shut down); its timeout still
// applies.
Status Connection::OpenVersion1(const Settings& settings) {
  Status created = NewLibraryHandle(settings);
  if (!created.ok) return created;
  if (!settings.source_ip.empty() && !remctl_set_source_ip(r_, settings.source_ip.c_str())) {
    return Fail(Failure::kConnect, LibraryError("cannot set source address"));
  }
  // libremctl counts whole seconds: a part of one rounds up.
  if (settings.idle_timeout_ms > 0) remctl_set_timeout(r_, static_cast<time_t>((settings.idle_timeout_ms + 999) / 1000));
  if (cancelled()) return Cancelled();
  const char* principal = target_.principal ? target_.principal->c_str() : nullptr;
  if (!remctl_open(r_, target_.host.c_str(), target_.port, principal)) {
    return LibraryFailure("cannot open connection", Step::kAuthenticate);
  }
  opened_ = true;
  version1_ = true;
  return {};
}

Status Connection::Command(const Arguments& args, bool as_strings,
                           const Settings& settings) {
  if (cancelled()) return Cancelled();
  Status connected = EnsureConnected(settings);
  if (!connected.ok) return connected;
  // The last moment an abort can keep the command from the server.
  if (cancelled()) return Cancelled();
  std::vector<iovec> vector(args.lengths.size());
  size_t offset = 0;
  for (size_t i = 0; i < args.lengths.size(); i++) {
    vector[i].iov_base = const_cast<char*>(args.bytes.data()) + offset;
    vector[i].iov_len = args.lengths[i];
    offset += args.lengths[i];
  }
  if (socket_timeouts_) ApplySocketTimeout(settings);
  bool ok;
  if (as_strings) {
    std::vector<std::string> copies;
    copies.reserve(vector.size());
    for (const iovec& part : vector) {
      copies.emplace_back(static_cast<const char*>(part.iov_base), part.iov_len);
    }
    std::vector<const char*> argv;
    argv.reserve(copies.size() + 1);
    for (const std::string& part : copies) argv.push_back(part.c_str());
    argv.push_back(nullptr);
    ok = remctl_command(r_, argv.data()) != 0;
  } else {
    ok = remctl_commandv(r_, vector.data(), vector.size()) != 0;
  }
  if (link_) link_->Sent();
  if (!ok) return LibraryFailure("cannot send command", Step::kSend);
  expecting_ = true;
  return {};
}

struct remctl_output* Connection::ReadOutput(const Settings& settings,
                                             Status* status) {
  if (cancelled()) {
    *status = Cancelled();
    return nullptr;
  }
  if (r_ == nullptr || !opened_) {
    *status = Fail(Failure::kNotOpen, "no connection open");
    return nullptr;
  }
  if (socket_timeouts_) ApplySocketTimeout(settings);
  // The socket's own timeouts are retried by libremctl and only roughly
  // kept: a call's whole timeout is waited out here, to the millisecond.
  if (socket_timeouts_ && deadline_ms_ != 0 && link_ && expecting_ && !AwaitOutput(settings)) {
    const bool whole_call = NowMs() >= deadline_ms_ - kTimeoutSlackMs;
    *status = Fail(Failure::kTimeout, whole_call ? CallTimedOut() : "error receiving token: timed out");
    expecting_ = false;
    return nullptr;
  }
  struct remctl_output* output = remctl_output(r_);
  if (output == nullptr) {
    *status = LibraryFailure("cannot read output", Step::kReceive);
    expecting_ = false;
    return output;
  }
  // Version 1 sends a command's whole output and status in one token, then
  // closes: libremctl returns the rest without reading.
  if (output->type != REMCTL_OUT_OUTPUT || version1_) expecting_ = false;
  if (link_) {
    link_->Consumed();
    if (output->type != REMCTL_OUT_DONE) link_->Answered(output->type == REMCTL_OUT_STATUS);
    if (output->type == REMCTL_OUT_OUTPUT) {
      if (blocking_) {
        link_->Acknowledge();
      } else {
        link_->OweAcknowledge();
      }
    }
  }
  return output;
}

OutputResult Connection::Output(const Settings& settings) {
  OutputResult result;
  struct remctl_output* output = ReadOutput(settings, &result.status);
  if (output == nullptr) return result;
  Token& token = result.token;
  switch (output->type) {
    case REMCTL_OUT_OUTPUT:
      token.type = Token::Type::kOutput;
      token.stream = output->stream;
      break;
    case REMCTL_OUT_STATUS:
      token.type = Token::Type::kStatus;
      token.status = StatusByte(output);
      break;
    case REMCTL_OUT_ERROR:
      token.type = Token::Type::kError;
      token.error = output->error;
      break;
    case REMCTL_OUT_DONE:
      token.type = Token::Type::kDone;
      break;
  }
  if ((token.type == Token::Type::kOutput ||
       token.type == Token::Type::kError) &&
      !token.data.Append(output->data, output->length)) {
    result.status = Fail(Failure::kSystem, "cannot allocate memory", {ENOMEM, "", "malloc", "", 0});
  }
  return result;
}

Status Connection::Noop(const Settings& settings) {
  if (cancelled()) return Cancelled();
  // libremctl's refusal, without the reopen it would make first: a version 1
  // server closes the connection after each command.
  if (version1_ && opened_) return Fail(Failure::kUnsupported, "NOOP message not supported");
  Status connected = EnsureConnected(settings);
  if (!connected.ok) return connected;
  if (socket_timeouts_) ApplySocketTimeout(settings);
  if (link_) link_->Sent();
  const bool ok = remctl_noop(r_) != 0;
  if (!ok) return LibraryFailure("cannot send noop", Step::kReceive);
  if (link_) link_->Answered(true);
  return {};
}

RunResult Connection::Run(const Arguments& args, const Settings& settings,
                          size_t max_output) {
  RunResult result;
  result.status = Command(args, false, settings);
  if (!result.status.ok) return result;
  RunCollector collector(max_output);
  for (;;) {
    // Straight from libremctl's token into the result: one copy of the data.
    struct remctl_output* output = ReadOutput(settings, &result.status);
    if (output == nullptr) return result;
    if (!collector.Take(output, result)) {
      // The rest of the output is still on its way: the connection cannot
      // carry another command, so it ends here.
      if (result.exceeded) Teardown();
      return result;
    }
  }
}

void Connection::Close() {
  Teardown();
  target_ = OpenTarget();
  std::lock_guard<std::mutex> lock(cancel_mutex_);
  cancel_.Reset();
}

namespace {

// What the thread opening for remctlSync and its caller share: either may
// be the last to let go of it.
struct SyncOpen {
  std::shared_ptr<Connection> connection = std::make_shared<Connection>();
  std::mutex mutex;
  std::condition_variable opened;
  bool done = false;
  Status status;
};

}  // namespace

RunResult RunBlocking(OpenTarget target, const Arguments& args,
                      const Settings& settings, size_t max_output,
                      int64_t timeout_ms) {
  const int64_t started = NowMs();
  RunResult result;
  auto open = std::make_shared<SyncOpen>();
  std::shared_ptr<Connection> connection = open->connection;
  connection->UseSocketTimeouts(timeout_ms > 0 ? started + timeout_ms : 0, timeout_ms);
  std::thread opener;
  try {
    opener = StartThread("remctl-open", [open, target = std::move(target), settings]() mutable {
      Status status = open->connection->Open(std::move(target), settings);
      std::lock_guard<std::mutex> lock(open->mutex);
      open->status = std::move(status);
      open->done = true;
      open->opened.notify_all();
    });
  } catch (const std::system_error& e) {
    result.status = {false, std::string("cannot start a thread to open the connection: ") + e.what(),
                     Failure::kSystem, {e.code().value(), "", "pthread_create", "", 0}};
    return result;
  }
  const int64_t wait_ms = Shorter(settings.connect_timeout_ms, timeout_ms);
  bool done;
  {
    std::unique_lock<std::mutex> lock(open->mutex);
    const auto finished = [&open] { return open->done; };
    if (wait_ms > 0) {
      done = open->opened.wait_for(lock, std::chrono::milliseconds(wait_ms), finished);
    } else {
      open->opened.wait(lock, finished);
      done = true;
    }
  }
  if (!done) {
    // The thread lets go once libkrb5 does, and closes what it opened.
    connection->Cancel();
    opener.detach();
    const bool whole_call = timeout_ms > 0 && wait_ms == timeout_ms;
    result.status = {false,
                     whole_call ? connection->CallTimedOut()
                                : "timed out after " + std::to_string(wait_ms) +
                                      " ms connecting and authenticating: no answer from the server or from the KDC",
                     Failure::kTimeout, {}};
    return result;
  }
  opener.join();
  if (!open->status.ok) {
    result.status = std::move(open->status);
    connection->Close();
    return result;
  }
  result = connection->Run(args, settings, max_output);
  connection->Close();
  return result;
}

}  // namespace remctl_node
