// Plain C++ over libremctl: one remctl connection, its settings and the
// socket under it. Every method returns what happened ({ok, message, ...})
// instead of throwing, and nothing here knows about N-API. All methods but
// Cancel() run on one thread at a time: the event loop's, which calls
// libremctl only when it cannot block (see Readiness and CanSend), or a
// thread of ours, or remctlSync's caller, with the socket blocking.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "socket.h"

struct remctl;
struct remctl_output;

namespace remctl_node {

// Settings in force for one operation, captured when the operation is
// issued so that a setter never changes a call already queued.
struct Settings {
  // Milliseconds the server may be silent before an operation fails (0:
  // forever), as libremctl's timeout in seconds.
  int64_t idle_timeout_ms = 0;
  // Milliseconds connecting may take, per address tried (0: the kernel's).
  int64_t connect_timeout_ms = 0;
  std::optional<std::string> ccache;
  std::string source_ip;
  // A server that drops the connection before authentication completes
  // (remctld's listen backlog is 5) is tried again this many times, after
  // open_retry_delay_ms, doubled each time, plus up to half again of jitter.
  // Nothing has been sent then, so trying again is safe.
  long open_retries = 3;
  long open_retry_delay_ms = 50;
  // SO_RCVBUF and SO_SNDBUF for the sockets opened; 0 leaves the kernel's
  // (which grows them as needed). For the tests of the blocking fallbacks.
  int receive_buffer = 0;
  int send_buffer = 0;
  // After each successful open, find out how long its credentials last (it
  // reads the ticket cache: for persistent connections only).
  bool track_credentials = false;
};

// Where to open a connection to. Exactly one of the three forms is used.
struct OpenTarget {
  enum class Kind { kHost, kAddresses, kFd } kind = Kind::kHost;
  std::string host;  // empty: none given (only with a principal)
  unsigned short port = 0;
  std::vector<SocketAddress> addresses;
  int fd = -1;  // a duplicate owned by the target until opened
  std::optional<std::string> principal;
};

// What kind of failure an operation ended in. It is decided from which step
// failed and what the socket showed (our own connect's errno, our timers, a
// peek at what the server sent), never from libremctl's text, and becomes
// the error's code in JavaScript.
enum class Failure {
  kNone,
  kConnect,         // resolving or connecting failed: see system
  kAuth,            // GSS-API or Kerberos refused (libremctl's text says how)
  kTimeout,         // the connection was silent for longer than its timeout
  kConnectionLost,  // the server closed or reset the connection
  kBadResponse,     // the server sent something that is not the protocol
  kNotOpen,         // no connection to run on
  kCancelled,       // an abort or a close ended it
  kUnsupported,     // the server's protocol version cannot do it (NOOP before version 3)
  kSystem,          // a local resource ran out: see system
};

const char* FailureName(Failure failure);

struct Status {
  bool ok = true;
  std::string message;  // libremctl's text on failure
  Failure failure = Failure::kNone;
  SystemError system;   // the system error under it, where one is known
};

// What every operation of a cancelled connection returns, before it does
// anything.
Status CancelledStatus();

// A command's arguments, copied out of JavaScript into one block so the
// worker never reads memory the caller may change.
struct Arguments {
  std::string bytes;
  std::vector<size_t> lengths;
};

// A malloc'ed byte buffer that grows with realloc: for large outputs glibc
// moves pages with mremap instead of copying, so collecting N bytes costs
// about N bytes of memory. Its storage can be handed over without a copy.
class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(ByteBuffer&& other) noexcept;
  ByteBuffer& operator=(ByteBuffer&& other) noexcept;
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;
  ~ByteBuffer() { std::free(data_); }
  bool Append(const char* data, size_t length);
  char* data() const { return data_; }
  size_t size() const { return size_; }
  // Gives up the storage; the caller frees it with free().
  char* Release();

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

struct Token {
  enum class Type { kOutput, kStatus, kError, kDone } type = Type::kDone;
  ByteBuffer data;
  int stream = 0;
  int status = 0;
  int error = 0;
};

struct OutputResult {
  Status status;
  Token token;
};

// Everything one command produced, as the simple interfaces return it.
struct RunResult {
  Status status;             // a local or network failure
  bool exceeded = false;     // max_output was reached; the connection closed
  bool protocol_error = false;
  int error_code = 0;        // with protocol_error
  std::string error_message; // with protocol_error
  int exit_status = 0;
  ByteBuffer out;
  ByteBuffer err;
};

// Milliseconds to wait before retry attempt + 1 of an open (see Settings).
int64_t RetryDelayMs(long first_ms, long attempt);

// How long connecting to one address may take: the connect timeout or the
// idle timeout (libremctl bounds the connect by its timeout), the shorter
// of those set; 0 for the kernel's.
int64_t ConnectBudgetMs(const Settings& settings);

// remctlSync's whole exchange. The open runs on a thread of ours that the
// caller waits for only until connect_timeout_ms (or timeout_ms, the call's
// whole timeout) runs out: a KDC that never answers holds libkrb5, which
// nothing interrupts, and that thread with it, but not the caller. The
// command and its output then run on the calling thread, the socket
// blocking, as the C library does it.
RunResult RunBlocking(OpenTarget target, const Arguments& args,
                      const Settings& settings, size_t max_output,
                      int64_t timeout_ms);

// Takes a command's output tokens into a RunResult, one at a time.
class RunCollector {
 public:
  explicit RunCollector(size_t max_output) : max_output_(max_output) {}
  // false once the output has ended (status, error, done), failed, or grown
  // past max_output (then result.exceeded: the rest is still on its way).
  bool Take(const struct remctl_output* output, RunResult& result);

 private:
  size_t max_output_;
};

class Connection {
 public:
  Connection();
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Status Open(OpenTarget target, const Settings& settings);
  Status Command(const Arguments& args, bool as_strings,
                 const Settings& settings);
  OutputResult Output(const Settings& settings);
  // libremctl's next token, valid until the next call on the connection.
  struct remctl_output* ReadOutput(const Settings& settings, Status* status);
  Status Noop(const Settings& settings);
  // Sends a command and collects its output, stopping once stdout and
  // stderr together exceed max_output bytes (0: no limit).
  RunResult Run(const Arguments& args, const Settings& settings,
                size_t max_output);
  // Ends the connection and frees every descriptor it held.
  void Close();
  // Ends the current connection, which a later command may reopen.
  void Teardown();

  // For the event loop. The socket under the connection (-1 if none); it
  // changes only in Open, Close, Teardown and a reopen.
  int socket_fd() const { return link_ ? link_->fd() : -1; }
  // Whether the next token can be read now (with no connection, reading
  // fails at once, which is ready too).
  Readiness TokenReadiness() const;
  bool WaitFor(size_t need) { return link_ && link_->WaitFor(need); }
  void Woken() {
    if (link_) link_->Woken();
  }
  // Command() returns without waiting: it fails at once (cancelled, never
  // opened), or it need not reopen and its tokens fit the free send space.
  bool CommandCannotBlock(const Arguments& args) const;
  // Noop() fails at once, without the network.
  bool NoopFailsNow() const { return cancelled() || (!opened_ && !Reopenable()) || (version1_ && opened_); }
  // The next command or noop would reopen the connection first: the server
  // closed it, or it timed out, since the last exchange. Never for a
  // version 1 connection, which libremctl reopens for each command itself.
  bool ServerClosed() const;
  void SetBlocking(bool blocking);
  void SocketFlagsChanged() {
    if (link_) link_->FlagsChanged();
  }
  // The socket is open and the server has not closed it, as far as can be
  // told without waiting; the next Command or Noop then trusts it.
  bool CheckAlive() const;
  // The connection was silent for longer than its timeout.
  void TimeOut();
  // Milliseconds since the server last sent or acknowledged anything; -1
  // without a connection.
  int64_t IdleMs() const { return link_ ? link_->IdleMs() : -1; }
  // Any thread, for a call blocked on a thread of ours: ends the connection
  // if the server has been silent for timeout_ms, else returns how much of
  // it is left (0 once timed out).
  int64_t TimeOutIfIdle(int64_t timeout_ms);
  // With no event loop to time calls (remctlSync), the socket does, also
  // for the call's whole timeout: deadline_ms on the monotonic clock (0: none),
  // timeout_ms what it was given as.
  void UseSocketTimeouts(int64_t deadline_ms = 0, int64_t timeout_ms = 0) {
    socket_timeouts_ = true;
    deadline_ms_ = deadline_ms;
    call_timeout_ms_ = timeout_ms;
  }
  // Any thread: the last Open has ended, one way or the other. JavaScript's
  // connectTimeout asks, since a one-shot call opens and runs in one go.
  bool open_ended() const { return open_ended_.load(); }
  // When the credentials of the last successful open expire, in milliseconds
  // since the epoch; -1 when that cannot be told (or the open failed). Any
  // thread: a reopen (EnsureConnected) changes it.
  int64_t credentials_expire_ms() const { return credentials_expire_ms_.load(); }
  // Successful opens so far, reopens included. Any thread.
  int64_t opens() const { return opens_.load(); }
  // What a call whose whole timeout ran out fails with.
  std::string CallTimedOut() const;

  // Any thread: ends the current connection at once; a blocked call
  // returns, and every later operation fails without touching the network.
  // Final: a cancelled connection never sends anything again, not even on a
  // reopen, so a command aborted before it went out never goes out.
  void Cancel();
  bool cancelled() const { return cancelled_.load(); }

 private:
  Status OpenAttempts(OpenTarget target, const Settings& settings);
  Status NewLibraryHandle(const Settings& settings);
  Status OpenOnce(const Settings& settings);
  bool SpeaksVersion1();
  Status OpenVersion1(const Settings& settings);
  bool RetryableOpenFailure();
  void Disconnect();
  void SetLink(std::unique_ptr<Link> link);
  bool Reopenable() const;
  Status EnsureConnected(const Settings& settings);
  // Which part of the exchange a libremctl call that failed was in.
  enum class Step { kAuthenticate, kSend, kReceive };
  Status Fail(Failure failure, std::string message, SystemError system = {});
  // A libremctl call failed: its text, and what kind of failure it was.
  Status LibraryFailure(const char* fallback, Step step);
  std::string LibraryError(const char* fallback);
  Failure Classify(Step step) const;

  Status Cancelled();

  std::atomic<bool> cancelled_{false};
  struct remctl* r_ = nullptr;
  // Cancel() reaches both from any thread: the eventfd for a connect or a
  // wait under way, the link for a libremctl call. The mutex keeps either
  // from being used after the worker freed it (a descriptor number may be
  // reused at once); only the worker thread changes them.
  std::mutex cancel_mutex_;
  std::unique_ptr<Link> link_;
  Fd cancel_;
  // libremctl keeps pointers to the host and principal it was given; these
  // copies live as long as the connection.
  OpenTarget target_;
  bool opened_ = false;
  bool blocking_ = true;
  bool socket_timeouts_ = false;
  int64_t deadline_ms_ = 0;
  int64_t call_timeout_ms_ = 0;
  std::atomic<bool> open_ended_{false};
  std::atomic<int64_t> credentials_expire_ms_{-1};
  std::atomic<int64_t> opens_{0};
  // The socket timeout for the next blocking call: the idle timeout, or what
  // is left of the call's, whichever is shorter.
  int64_t SocketTimeoutMs(const Settings& settings) const;
  void ApplySocketTimeout(const Settings& settings);
  // remctlSync with a whole-call timeout: waits until the next token starts
  // arriving, false (timed out) if the idle or the call's timeout comes first.
  bool AwaitOutput(const Settings& settings);
  // The idle timeout the socket timeouts were last set for.
  int64_t settings_idle_ms_ = 0;
  // A server speaking protocol version 1, on a connection libremctl opened
  // itself (see OpenVersion1): there is no link.
  bool version1_ = false;
  // CommandCannotBlock found the connection alive just before Command: one
  // check of the socket is enough.
  mutable bool known_alive_ = false;
  // A command was sent and its output has not ended: libremctl's next
  // remctl_output reads from the socket (otherwise it returns at once).
  bool expecting_ = false;
  unsigned jitter_seed_ = 0;
};

}  // namespace remctl_node
