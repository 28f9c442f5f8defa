#include "socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <algorithm>


namespace remctl_node {

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Binds to the source address the way libremctl's network_source does, so
// the same inputs give the same errors ("any" and "all" mean no binding, an
// address of the other family is EINVAL).
bool BindSource(int fd, int family, const std::string& source) {
  if (source.empty() || source == "all" || source == "any") return true;
  if (family == AF_INET) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    if (!inet_aton(source.c_str(), &sa.sin_addr)) {
      errno = EINVAL;
      return false;
    }
    return bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
  }
  if (family == AF_INET6) {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, source.c_str(), &sa.sin6_addr) < 1) {
      errno = EINVAL;
      return false;
    }
    return bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
  }
  errno = EAFNOSUPPORT;
  return false;
}

// Waits for a non-blocking connect with poll(), which has no FD_SETSIZE limit.
// Leaves the reason for a failure in errno; *deadline_passed says whether
// ETIMEDOUT was our own deadline rather than the kernel's.
bool WaitConnected(int fd, int64_t timeout_ms, int cancel_fd, bool* deadline_passed) {
  const int64_t deadline = timeout_ms > 0 ? NowMs() + timeout_ms : 0;
  for (;;) {
    pollfd fds[2] = {{fd, POLLOUT, 0}, {cancel_fd, POLLIN, 0}};
    int wait = -1;
    if (deadline) {
      int64_t left = deadline - NowMs();
      if (left <= 0) {
        *deadline_passed = true;
        errno = ETIMEDOUT;
        return false;
      }
      wait = static_cast<int>(left);
    }
    int n = poll(fds, cancel_fd >= 0 ? 2 : 1, wait);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) {
      *deadline_passed = true;
      errno = ETIMEDOUT;
      return false;
    }
    if (cancel_fd >= 0 && (fds[1].revents & POLLIN)) {
      errno = ECANCELED;
      return false;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return false;
    if (err != 0) {
      errno = err;
      return false;
    }
    return true;
  }
}

SystemError AddressError(int number, const char* syscall, const addrinfo* ai) {
  SystemError error;
  error.number = number;
  error.syscall = syscall;
  char host[NI_MAXHOST];
  char service[NI_MAXSERV];
  if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), service,
                  sizeof(service), NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    error.address = host;
    error.port = static_cast<unsigned short>(std::atoi(service));
  }
  return error;
}

// Tries each address until one connects; on failure *error holds the last
// reason, as errno does in libremctl's network_connect.
Fd ConnectFirst(const addrinfo* list, const std::string& source, int64_t timeout_ms,
                int cancel_fd, SystemError* error, bool* deadline_passed) {
  *error = SystemError{ECONNREFUSED, "", "", "", 0};
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    *deadline_passed = false;
    Fd fd(socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                 ai->ai_protocol));
    if (!fd.valid()) {
      *error = AddressError(errno, "socket", ai);
      continue;
    }
    if (!BindSource(fd.get(), ai->ai_family, source)) {
      *error = SystemError{errno, "", "bind", source, 0};
      continue;
    }
    if (connect(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0 ||
        (errno == EINPROGRESS && WaitConnected(fd.get(), timeout_ms, cancel_fd, deadline_passed))) {
      return fd;
    }
    *error = AddressError(errno, "connect", ai);
    if (error->number == ECANCELED) break;
  }
  return Fd();
}

// getaddrinfo's failure as Node names it (a name that does not exist is
// ENOTFOUND, as in node:dns).
std::string ResolveCode(int status) {
  switch (status) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
      return "ENOTFOUND";
    case EAI_AGAIN: return "EAI_AGAIN";
    case EAI_FAIL: return "EAI_FAIL";
    case EAI_FAMILY: return "EAI_FAMILY";
    case EAI_MEMORY: return "EAI_MEMORY";
    case EAI_SERVICE: return "EAI_SERVICE";
    case EAI_SOCKTYPE: return "EAI_SOCKTYPE";
    case EAI_BADFLAGS: return "EAI_BADFLAGS";
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY: return "EAI_ADDRFAMILY";
#endif
    default: return "EAI_FAIL";
  }
}

ConnectFailure FailureOf(const SystemError& error, bool deadline_passed) {
  if (error.number == ECANCELED) return ConnectFailure::kCancel;
  if (deadline_passed) return ConnectFailure::kTimeout;
  return ConnectFailure::kUnreachable;
}

}  // namespace

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    Reset();
    fd_ = other.Release();
  }
  return *this;
}

void Fd::Reset() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

Fd MakeEventFd() { return Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)); }

void SignalEventFd(int fd) {
  uint64_t one = 1;
  while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR) {
  }
}

bool WaitEventFd(int fd, long ms) {
  const int64_t deadline = NowMs() + ms;
  for (;;) {
    pollfd wait{fd, POLLIN, 0};
    int64_t left = deadline - NowMs();
    int n = poll(&wait, 1, left > 0 ? static_cast<int>(left) : 0);
    if (n < 0 && errno == EINTR) continue;
    return n > 0;
  }
}

Fd ConnectHost(const std::string& host, unsigned short port,
               const std::string& source, int64_t timeout_ms, int cancel_fd,
               ConnectError* error) {
  *error = ConnectError();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  int status = getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
  if (status != 0) {
    error->message = "unknown host " + host + ": " + gai_strerror(status);
    error->failure = ConnectFailure::kResolve;
    error->system.number = status == EAI_SYSTEM ? errno : 0;
    error->system.code = status == EAI_SYSTEM ? "" : ResolveCode(status);
    error->system.syscall = "getaddrinfo";
    error->system.address = host;
    return Fd();
  }
  bool deadline_passed = false;
  Fd fd = ConnectFirst(list, source, timeout_ms, cancel_fd, &error->system, &deadline_passed);
  freeaddrinfo(list);
  if (!fd.valid()) {
    error->message = "cannot connect to " + host + " (port " + std::to_string(port) +
                     "): " + strerror(error->system.number);
    error->failure = FailureOf(error->system, deadline_passed);
  }
  return fd;
}

Fd ConnectAddresses(const std::vector<SocketAddress>& addresses,
                    const std::string& source, int64_t timeout_ms, int cancel_fd,
                    ConnectError* error) {
  *error = ConnectError();
  error->system.number = EINVAL;
  bool deadline_passed = false;
  for (const SocketAddress& target : addresses) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* list = nullptr;
    const std::string service = std::to_string(target.port);
    int status =
        getaddrinfo(target.address.c_str(), service.c_str(), &hints, &list);
    if (status != 0) {
      error->system = SystemError{EINVAL, "", "getaddrinfo", target.address, target.port};
      deadline_passed = false;
      continue;
    }
    Fd fd = ConnectFirst(list, source, timeout_ms, cancel_fd, &error->system, &deadline_passed);
    freeaddrinfo(list);
    if (fd.valid()) return fd;
    if (error->system.number == ECANCELED) break;
  }
  error->message = std::string("cannot connect: ") + strerror(error->system.number);
  error->failure = FailureOf(error->system, deadline_passed);
  return Fd();
}

std::unique_ptr<Link> Link::Start(Fd socket, int* lib_fd, SystemError* error) {
  int on = 1;
  // The socket may be a caller's descriptor of any kind: options that do not
  // apply to it are fine to miss. Without TCP_NODELAY a command sent as
  // several tokens would wait for the server's delayed ACKs.
  setsockopt(socket.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  int flags = fcntl(socket.get(), F_GETFL);
  if (flags < 0 || fcntl(socket.get(), F_SETFL, flags & ~O_NONBLOCK) < 0) {
    *error = SystemError{errno, "", "fcntl", "", 0};
    return nullptr;
  }
  int duplicate = fcntl(socket.get(), F_DUPFD_CLOEXEC, 0);
  if (duplicate < 0) {
    *error = SystemError{errno, "", "dup", "", 0};
    return nullptr;
  }
  *lib_fd = duplicate;
  int send_buffer = 0;
  socklen_t length = sizeof(send_buffer);
  if (getsockopt(socket.get(), SOL_SOCKET, SO_SNDBUF, &send_buffer, &length) != 0) send_buffer = 0;
  return std::unique_ptr<Link>(new Link(std::move(socket), send_buffer));
}

void Link::SetBlocking(bool blocking) {
  if (flags_ < 0) flags_ = fcntl(socket_.get(), F_GETFL);
  if (flags_ < 0) return;
  const int wanted = blocking ? flags_ & ~O_NONBLOCK : flags_ | O_NONBLOCK;
  if (wanted == flags_) return;
  flags_ = fcntl(socket_.get(), F_SETFL, wanted) == 0 ? wanted : -1;
}

// libremctl's reads (socket_xread in util/network.c) take EAGAIN as no
// progress and try again, giving up after 100 tries in a row; its writes
// (xwrite) give up on the first. So a read waits a hundredth of the timeout
// each try, and a silent server fails it after the whole timeout.
constexpr long kReadTries = 100;

void Link::SetTimeout(int64_t timeout_ms) {
  if (timeout_ms == timeout_ms_) return;
  timeout_ms_ = timeout_ms;
  const int64_t read_ms = timeout_ms > 0 ? std::max<int64_t>(timeout_ms / kReadTries, 1) : 0;
  const int64_t write_ms = std::max<int64_t>(timeout_ms, 0);
  timeval read_wait{static_cast<time_t>(read_ms / 1000), static_cast<suseconds_t>((read_ms % 1000) * 1000)};
  timeval write_wait{static_cast<time_t>(write_ms / 1000), static_cast<suseconds_t>((write_ms % 1000) * 1000)};
  setsockopt(socket_.get(), SOL_SOCKET, SO_RCVTIMEO, &read_wait, sizeof(read_wait));
  setsockopt(socket_.get(), SOL_SOCKET, SO_SNDTIMEO, &write_wait, sizeof(write_wait));
}

namespace {

// libremctl's TOKEN_MAX_LENGTH: it refuses a longer token after reading its
// 5-byte header, so such a token is ready as soon as the header is.
constexpr uint32_t kMaxTokenLength = 1024 * 1024;

// How recent an ended exchange, or a look at the socket, counts as proof the
// connection is alive.
constexpr int64_t kRecentNs = 1000 * 1000;

int64_t MonotonicNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t(now.tv_sec) * 1000000000 + now.tv_nsec;
}

}  // namespace

Readiness Link::TokenReadiness() {
  // A small token (a status, a short output) is seen whole by the peek
  // alone; a larger one needs the count of what is buffered.
  unsigned char peeked[512];
  const ssize_t n = recv(socket_.get(), peeked, sizeof(peeked), MSG_PEEK | MSG_DONTWAIT);
  Readiness readiness{true, 0};
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    readiness = {false, 1};
  } else if (n > 0 && n < 5) {
    readiness = {false, 5};
  } else if (n > 0) {
    // End of file or an error (n <= 0 above) is ready too: libremctl's read
    // reports it without waiting. So is a token longer than libremctl takes.
    const uint32_t length = (uint32_t(peeked[1]) << 24) | (uint32_t(peeked[2]) << 16) |
                            (uint32_t(peeked[3]) << 8) | uint32_t(peeked[4]);
    const size_t need = 5 + size_t(length);
    if (length > kMaxTokenLength) bad_framing_ = true;
    if (length <= kMaxTokenLength && size_t(n) < need && buffered_ < need) {
      buffered_ = Unread();
      if (buffered_ < need) readiness = {false, need};
    }
    if (readiness.ready) next_token_ = need;
  }
  if (!readiness.ready && ack_owed_) AcknowledgeNow();
  return readiness;
}

bool Link::WaitFor(size_t need) {
  const bool woken = woken_;
  woken_ = false;
  if (need == low_water_) return !(woken && need > 1);
  int wanted = static_cast<int>(need);
  if (setsockopt(socket_.get(), SOL_SOCKET, SO_RCVLOWAT, &wanted, sizeof(wanted)) != 0) {
    return false;
  }
  low_water_ = need;
  if (need <= 1) return true;
  // The kernel caps the low-water mark at half the receive buffer it may
  // have; below need, poll would report a partial token readable forever.
  int granted = 0;
  socklen_t length = sizeof(granted);
  if (getsockopt(socket_.get(), SOL_SOCKET, SO_RCVLOWAT, &granted, &length) != 0) return false;
  return granted >= wanted;
}

bool Link::WaitReadable(int64_t ms) const {
  const int64_t deadline = NowMs() + ms;
  for (;;) {
    pollfd wait{socket_.get(), POLLIN, 0};
    const int64_t left = deadline - NowMs();
    const int n = poll(&wait, 1, left > 0 ? static_cast<int>(std::min<int64_t>(left, INT32_MAX)) : 0);
    if (n < 0 && errno == EINTR) continue;
    return n != 0;
  }
}

bool Link::CanSend(size_t bytes) {
  // The kernel counts a buffer's bookkeeping against SO_SNDBUF too: half of
  // what is free is always there for data.
  const auto fits = [bytes](int buffer, int queued) {
    return buffer > 0 && int64_t(bytes) * 2 <= int64_t(buffer) - 2 * int64_t(queued);
  };
  if (!unanswered_ && fits(send_buffer_, 0)) return true;
  int buffer = 0;
  socklen_t length = sizeof(buffer);
  int queued = 0;
  if (getsockopt(socket_.get(), SOL_SOCKET, SO_SNDBUF, &buffer, &length) != 0 ||
      ioctl(socket_.get(), TIOCOUTQ, &queued) != 0 || queued < 0) {
    return false;
  }
  send_buffer_ = buffer;
  return fits(buffer, queued);
}

void Link::Answered(bool ended) {
  unanswered_ = false;
  ended_at_ns_ = ended ? MonotonicNs() : 0;
  // Nothing more comes that the server would hold back for our ACK.
  if (ended) ack_owed_ = false;
}

bool Link::alive() const {
  if (timed_out() || shut_down_.load()) return false;
  const int64_t now = MonotonicNs();
  const auto recent = [now](int64_t at) { return at != 0 && now - at < kRecentNs; };
  if (recent(ended_at_ns_) || recent(seen_open_at_ns_)) return true;
  if (PeerClosed()) return false;
  seen_open_at_ns_ = now;
  return true;
}

int64_t Link::IdleMs() const {
  tcp_info info{};
  socklen_t length = sizeof(info);
  if (getsockopt(socket_.get(), IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return 0;
  return std::min(info.tcpi_last_data_recv, info.tcpi_last_ack_recv);
}

size_t Link::Unread() const {
  int waiting = 0;
  if (ioctl(socket_.get(), FIONREAD, &waiting) != 0 || waiting < 0) return 0;
  return static_cast<size_t>(waiting);
}

void Link::Acknowledge() {
  if (Unread() > 0) {
    ack_owed_ = false;
    return;
  }
  AcknowledgeNow();
}

void Link::AcknowledgeNow() {
  ack_owed_ = false;
  int one = 1;
  setsockopt(socket_.get(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

void Link::Shutdown() {
  shut_down_.store(true);
  shutdown(socket_.get(), SHUT_RDWR);
}

void Link::TimeOut() {
  timed_out_.store(true);
  Shutdown();
}

bool Link::PeerClosed() const {
  if (shut_down_.load()) return true;
  pollfd check{socket_.get(), POLLIN | POLLRDHUP, 0};
  if (poll(&check, 1, 0) <= 0) return false;
  return (check.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace remctl_node
