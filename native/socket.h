// The TCP connection we own and hand to libremctl through a relay.
//
// libremctl waits with select() when it has a timeout, which aborts the
// process for descriptors of 1024 and above, and it cannot be interrupted
// while it reads. So we connect ourselves, keep libremctl's timeout at 0, and
// put a relay of our own between libremctl and the server: libremctl talks
// over a socketpair, the relay moves the bytes, re-arms TCP_QUICKACK after
// every receive (stock remctld leaves Nagle on, so each delayed ACK would
// cost ~40 ms a command), enforces the user's inactivity timeout and shuts
// everything down at once when a call is cancelled.
//
// Nothing here knows about N-API.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
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

// Resolves host and connects to the first address that answers, as
// libremctl's internal_connect does, but without select() and interruptible
// through cancel_fd. On failure returns an invalid Fd and sets error to
// libremctl's wording: "unknown host H: ..." or "cannot connect to H (port N):
// ...".
Fd ConnectHost(const std::string& host, unsigned short port,
               const std::string& source, long timeout, int cancel_fd,
               std::string* error);

// Connects to each address in turn, as remctl_open_addrinfo does. On failure
// the error reads "cannot connect: ...".
Fd ConnectAddresses(const std::vector<SocketAddress>& addresses,
                    const std::string& source, long timeout, int cancel_fd,
                    std::string* error);

// Moves bytes between libremctl's end of a socketpair and the server socket
// on a thread of its own, until either side closes, the connection is
// cancelled, or an operation sees no traffic for its timeout.
class Relay {
 public:
  // Takes the connected server socket. On success lib_fd receives the
  // descriptor libremctl must use (libremctl closes it); on failure returns
  // null with error set.
  static std::unique_ptr<Relay> Start(Fd server, int cancel_fd, int* lib_fd,
                                      std::string* error);
  ~Relay();

  // Brackets a blocking libremctl call: while one is in progress, timeout
  // seconds without a byte moving either way end the connection.
  void BeginOperation(long timeout);
  void EndOperation();

  bool timed_out() const { return timed_out_.load(); }
  // The server closed or reset the connection.
  bool peer_closed() const { return peer_closed_.load(); }
  // False once the server closed, the relay failed or ended.
  bool alive() const { return !finished_.load() && !peer_closed_.load(); }

  // Waits for the pump thread to end. It ends by itself once libremctl closed
  // its end, or at once after a cancel or a timeout.
  void Join();

 private:
  Relay(Fd server, Fd pump_end, int cancel_fd);
  void Pump();
  void Touch();

  Fd server_;
  Fd pump_end_;
  int cancel_fd_;
  Fd wake_;  // eventfd: a new timeout was set
  std::thread thread_;
  std::atomic<bool> busy_{false};
  std::atomic<bool> timed_out_{false};
  std::atomic<bool> peer_closed_{false};
  std::atomic<bool> finished_{false};
  std::atomic<int64_t> last_activity_ms_{0};
  std::atomic<long> timeout_ms_{0};
};

// Creates an eventfd used to cancel whatever a connection is waiting on.
Fd MakeEventFd();
void SignalEventFd(int fd);
void DrainEventFd(int fd);
// Waits up to ms for the eventfd; true if it was signalled.
bool WaitEventFd(int fd, long ms);

}  // namespace remctl_node
