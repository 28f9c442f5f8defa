// The TCP connection we own and hand to libremctl.
//
// libremctl waits with select() when it has a timeout, which aborts the
// process for descriptors of 1024 and above, and it cannot be interrupted
// while it reads. So we connect ourselves (with poll()), keep libremctl's
// timeout at 0, give libremctl a duplicate of the socket, and do from the
// outside what it cannot: inactivity timeouts, aborts, and prompt ACKs.
//
// Nothing here knows about N-API.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace remctl_node {

// One address to connect to, numeric.
struct SocketAddress {
  std::string address;
  unsigned short port = 0;
};

// A descriptor that closes itself.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.Release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset();

 private:
  int fd_ = -1;
};

// Why a connect failed: only a server that refused or could not be reached
// is worth trying again on the legacy port.
enum class ConnectFailure { kNone, kResolve, kRefused, kTimeout, kCancel };

// Resolves host and connects to the first address that answers, as
// libremctl's internal_connect does, but without select() and interruptible
// through cancel_fd. On failure returns an invalid Fd and sets error to
// libremctl's wording: "unknown host H: ..." or "cannot connect to H (port N):
// ...", and failure (if given) to why.
Fd ConnectHost(const std::string& host, unsigned short port,
               const std::string& source, long timeout, int cancel_fd,
               std::string* error, ConnectFailure* failure = nullptr);

// Connects to each address in turn, as remctl_open_addrinfo does. On failure
// the error reads "cannot connect: ...".
Fd ConnectAddresses(const std::vector<SocketAddress>& addresses,
                    const std::string& source, long timeout, int cancel_fd,
                    std::string* error);

// The connected socket under a libremctl connection. libremctl reads and
// writes a duplicate of it; we keep the original, which lets us act on the
// connection while libremctl is blocked in it.
class Link {
 public:
  // Takes the connected socket (made blocking, as libremctl expects; for a
  // caller's descriptor this changes the caller's too). On success lib_fd
  // receives the duplicate for libremctl, which closes it; on failure returns
  // null with error set.
  static std::unique_ptr<Link> Start(Fd socket, int* lib_fd, std::string* error);
  ~Link();
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  // Bracket every blocking libremctl call. While one is in progress, timeout
  // seconds without the server sending data or acknowledging ours end the
  // connection (a process-wide watchdog checks every 100 ms). Once
  // EndOperation has returned, the watchdog cannot end the connection for
  // the operation that ended.
  void BeginOperation(long timeout);
  void EndOperation();

  // After reading a token that more will follow: stock remctld leaves Nagle
  // on, so its next token waits for our ACK of this one, which Linux would
  // delay by up to 40 ms. Re-arming TCP_QUICKACK sends it now. When the next
  // token is already here, the server was not waiting, and no packet is
  // spent on it.
  void Acknowledge();

  // Bytes the server sent that nobody has read yet.
  size_t Unread() const;

  // Any thread: ends the connection now; a blocked libremctl call returns.
  void Shutdown();

  // libremctl's writes fail instead of waiting (its write loop gives up on
  // EAGAIN): for the goodbye on close.
  void StopBlocking();

  bool timed_out() const { return timed_out_.load(); }
  // The server closed or reset the connection (or we shut it down).
  bool PeerClosed() const;
  bool alive() const { return !timed_out() && !PeerClosed(); }

  // The watchdog, under its lock.
  void CheckTimeout(int64_t now_ms);

 private:
  explicit Link(Fd socket) : socket_(std::move(socket)) {}

  Fd socket_;
  // Held by the watchdog from its decision to its shutdown, so that an
  // operation cannot end (or the next begin) in between.
  std::mutex operation_mutex_;
  bool busy_ = false;          // under operation_mutex_
  int64_t started_ms_ = 0;     // under operation_mutex_
  long timeout_ms_ = 0;        // under operation_mutex_
  std::atomic<bool> timed_out_{false};
  std::atomic<bool> shut_down_{false};
  bool watched_ = false;  // worker thread only
};

// Creates an eventfd used to cancel whatever a connection is waiting on.
Fd MakeEventFd();
void SignalEventFd(int fd);
// Waits up to ms for the eventfd; true if it was signalled.
bool WaitEventFd(int fd, long ms);

}  // namespace remctl_node
