// The TCP connection we own and hand to libremctl.
//
// libremctl waits with select() when it has a timeout, which aborts the
// process for descriptors of 1024 and above, and it cannot be interrupted
// while it reads. So we connect ourselves (with poll()), keep libremctl's
// timeout at 0, give libremctl a duplicate of the socket, and do from the
// outside what it cannot: readiness, inactivity timeouts, aborts, and prompt
// ACKs.
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

// The system error under a failure, in the terms Node gives one: errno (or,
// for a name that did not resolve, getaddrinfo's code as Node names it), the
// call that failed, and the address it was for.
struct SystemError {
  int number = 0;         // errno; 0 for none (or with code)
  std::string code;       // set only for getaddrinfo: ENOTFOUND, EAI_AGAIN...
  std::string syscall;    // empty: no system error is known
  std::string address;    // the numeric address, or for getaddrinfo the host
  unsigned short port = 0;
};

// Why a connect failed: only a server that refused or could not be reached
// is worth trying again on the legacy port. kTimeout is our own deadline
// (the timeout setting); the kernel giving up on a silent address is
// kUnreachable, with ETIMEDOUT.
enum class ConnectFailure { kNone, kResolve, kUnreachable, kTimeout, kCancel };

struct ConnectError {
  std::string message;  // libremctl's wording
  ConnectFailure failure = ConnectFailure::kNone;
  SystemError system;
};

// Resolves host and connects to the first address that answers, as
// libremctl's internal_connect does, but without select() and interruptible
// through cancel_fd. On failure returns an invalid Fd and sets error: its
// message in libremctl's wording ("unknown host H: ..." or "cannot connect
// to H (port N): ..."), why, and the system error of the last address tried.
Fd ConnectHost(const std::string& host, unsigned short port,
               const std::string& source, int64_t timeout_ms, int cancel_fd,
               ConnectError* error);

// Connects to each address in turn, as remctl_open_addrinfo does. On failure
// the message reads "cannot connect: ...".
Fd ConnectAddresses(const std::vector<SocketAddress>& addresses,
                    const std::string& source, int64_t timeout_ms, int cancel_fd,
                    ConnectError* error);

// Whether libremctl's next read of a token can run without blocking: the
// whole token (1 flag byte, a 4-byte big-endian length, that many bytes) is
// in the socket's receive queue, or the socket has ended or failed, which
// libremctl's read reports at once. Otherwise need is how many bytes must be
// buffered first. libremctl reads exactly one token per call and buffers
// nothing (util/tokens.c), so this is all it reads.
struct Readiness {
  bool ready = false;
  size_t need = 0;
};

// The connected socket under a libremctl connection. libremctl reads and
// writes a duplicate of it; we keep the original, which lets us watch it from
// the event loop and act on the connection while libremctl is blocked in it.
class Link {
 public:
  // Takes the connected socket (made blocking, as libremctl expects; for a
  // caller's descriptor this changes the caller's too). On success lib_fd
  // receives the duplicate for libremctl, which closes it; on failure returns
  // null with error set.
  static std::unique_ptr<Link> Start(Fd socket, int* lib_fd, SystemError* error);
  ~Link() = default;
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  int fd() const { return socket_.get(); }

  // Blocking (a thread of ours, remctlSync) or not (driven from the loop,
  // where libremctl is only called when it cannot block, and a read or write
  // that would wait fails instead of hanging the event loop).
  void SetBlocking(bool blocking);
  // Someone else (libuv's uv_poll_init) set the socket's flags.
  void FlagsChanged() { flags_ = -1; }
  // For blocking use with no event loop (remctlSync): a read or write that
  // waits timeout_ms without the server sending or acknowledging anything
  // fails (SO_SNDTIMEO, and SO_RCVTIMEO at a hundredth of it: see
  // socket.cc). 0: never.
  void SetTimeout(int64_t timeout_ms);
  int64_t timeout_ms() const { return timeout_ms_; }

  // Not ready: the ACK owed for the last output token goes out first (see
  // Acknowledge), as the server may be holding the rest back for it.
  Readiness TokenReadiness();
  // Makes the socket readable for poll only once need bytes are buffered
  // (SO_RCVLOWAT, for which the kernel also grows the receive buffer). False
  // if waiting on the loop cannot work: the socket cannot buffer that much,
  // or poll woke us short of the token it was told to wait for, which the
  // kernel does when its receive window has closed (tcp_epollin_ready) and
  // only reading opens it again. The token must then be read by a thread,
  // as it arrives.
  bool WaitFor(size_t need);
  // Poll reported the socket readable.
  void Woken() { woken_ = true; }
  // Blocking use: waits up to ms for something to read (or the end of the
  // connection); false if nothing came in that time.
  bool WaitReadable(int64_t ms) const;
  // Whether bytes can be written now without waiting for the server. With
  // everything sent answered, the send queue is empty (the answer carried
  // the ACK of all of it) and SO_SNDBUF, read once, says: no system call.
  bool CanSend(size_t bytes);
  // A command or noop went out.
  void Sent() {
    unanswered_ = true;
    ended_at_ns_ = 0;
  }
  // The server sent a token, so it had everything we sent. ended: the token
  // ended the exchange (a status, a noop's answer), and the server keeps the
  // connection open after it.
  void Answered(bool ended);

  // Milliseconds since the server last sent data or acknowledged ours, as
  // the kernel counts them.
  int64_t IdleMs() const;

  // After reading a token that more will follow: stock remctld leaves Nagle
  // on, so its next token waits for our ACK of this one, which Linux would
  // delay by up to 40 ms. Re-arming TCP_QUICKACK sends it now. When the next
  // token is already here, the server was not waiting, and no packet is
  // spent on it. On the loop this is left to TokenReadiness, whose peek
  // tells the same without a system call of its own.
  void Acknowledge();
  void OweAcknowledge() { ack_owed_ = true; }

  // Bytes the server sent that nobody has read yet.
  size_t Unread() const;
  // A token was read: the next wake is progress again.
  void Consumed() {
    woken_ = false;
    // A token read without TokenReadiness seeing it whole (a thread read it
    // as it came) leaves no count to go by.
    buffered_ = next_token_ > 0 && buffered_ > next_token_ ? buffered_ - next_token_ : 0;
    next_token_ = 0;
  }

  // Any thread: ends the connection now; a blocked libremctl call returns.
  void Shutdown();
  // The connection was silent for too long: it ends, and says so.
  void TimeOut();

  // libremctl's writes fail instead of waiting (its write loop gives up on
  // EAGAIN): for the goodbye on close.
  void StopBlocking() { SetBlocking(false); }

  bool timed_out() const { return timed_out_.load(); }
  // The server closed or reset the connection (or we shut it down).
  bool PeerClosed() const;
  // The server sent a token header that is not the protocol's: longer than
  // any token libremctl takes.
  bool bad_framing() const { return bad_framing_; }
  // Bytes the server sent on this connection in all, read or not (0 where
  // the kernel does not count them).
  uint64_t BytesReceived() const;
  // Alive as far as we can tell before sending. An exchange that ended, or
  // a look that found the connection open, within the last millisecond
  // needs no look at the socket: a close that recent races the command
  // whether we look or not, and a session's next command (or a command
  // right after JavaScript asked) saves a system call.
  bool alive() const;

 private:
  explicit Link(Fd socket, int send_buffer)
      : socket_(std::move(socket)), send_buffer_(send_buffer) {}
  // Re-arms TCP_QUICKACK, which sends the ACK owed at once.
  void AcknowledgeNow();

  Fd socket_;
  std::atomic<bool> timed_out_{false};
  std::atomic<bool> shut_down_{false};
  int64_t timeout_ms_ = 0;
  size_t low_water_ = 1;
  // The descriptor's flags as SetBlocking last set them; -1: to be read.
  int flags_ = -1;
  // At least this many bytes are in the receive queue (FIONREAD less the
  // tokens read since): a burst of tokens needs one count, not one each.
  size_t buffered_ = 0;
  // The size of the token TokenReadiness found whole, which the next read takes.
  size_t next_token_ = 0;
  bool woken_ = false;
  // SO_SNDBUF when last read: the kernel grows it as it tunes the socket.
  int send_buffer_;
  // Something we sent may still be in the send queue (the handshake's last
  // token may be ours).
  bool unanswered_ = true;
  // CLOCK_MONOTONIC when the last exchange ended, 0 while one is under way.
  int64_t ended_at_ns_ = 0;
  // CLOCK_MONOTONIC when alive() last looked at the socket and found it open.
  mutable int64_t seen_open_at_ns_ = 0;
  bool ack_owed_ = false;
  bool bad_framing_ = false;
};

// Creates an eventfd used to cancel whatever a connection is waiting on.
Fd MakeEventFd();
void SignalEventFd(int fd);
// Waits up to ms for the eventfd; true if it was signalled.
bool WaitEventFd(int fd, long ms);

}  // namespace remctl_node
