#include "socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>

namespace remctl_node {

namespace {

constexpr size_t kRelayBuffer = 256 * 1024;

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
// Leaves the reason for a failure in errno.
bool WaitConnected(int fd, long timeout, int cancel_fd) {
  const int64_t deadline = timeout > 0 ? NowMs() + timeout * 1000 : 0;
  for (;;) {
    pollfd fds[2] = {{fd, POLLOUT, 0}, {cancel_fd, POLLIN, 0}};
    int wait = -1;
    if (deadline) {
      int64_t left = deadline - NowMs();
      if (left <= 0) {
        errno = ETIMEDOUT;
        return false;
      }
      wait = static_cast<int>(left);
    }
    int n = poll(fds, cancel_fd >= 0 ? 2 : 1, wait);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) {
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

// Tries each address until one connects; on failure errno holds the last
// reason, as in libremctl's network_connect.
Fd ConnectFirst(const addrinfo* list, const std::string& source, long timeout,
                int cancel_fd) {
  int last_errno = ECONNREFUSED;
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    Fd fd(socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                 ai->ai_protocol));
    if (!fd.valid()) {
      last_errno = errno;
      continue;
    }
    if (!BindSource(fd.get(), ai->ai_family, source)) {
      last_errno = errno;
      continue;
    }
    if (connect(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0 ||
        (errno == EINPROGRESS && WaitConnected(fd.get(), timeout, cancel_fd))) {
      return fd;
    }
    last_errno = errno;
    if (last_errno == ECANCELED) break;
  }
  errno = last_errno;
  return Fd();
}

bool SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
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

void DrainEventFd(int fd) {
  uint64_t value;
  while (read(fd, &value, sizeof(value)) < 0 && errno == EINTR) {
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
               const std::string& source, long timeout, int cancel_fd,
               std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  int status = getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
  if (status != 0) {
    *error = "unknown host " + host + ": " + gai_strerror(status);
    return Fd();
  }
  Fd fd = ConnectFirst(list, source, timeout, cancel_fd);
  int saved = errno;
  freeaddrinfo(list);
  if (!fd.valid()) {
    *error = "cannot connect to " + host + " (port " + std::to_string(port) +
             "): " + strerror(saved);
  }
  return fd;
}

Fd ConnectAddresses(const std::vector<SocketAddress>& addresses,
                    const std::string& source, long timeout, int cancel_fd,
                    std::string* error) {
  int last_errno = EINVAL;
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
      last_errno = EINVAL;
      continue;
    }
    Fd fd = ConnectFirst(list, source, timeout, cancel_fd);
    last_errno = errno;
    freeaddrinfo(list);
    if (fd.valid()) return fd;
    if (last_errno == ECANCELED) break;
  }
  *error = std::string("cannot connect: ") + strerror(last_errno);
  return Fd();
}

std::unique_ptr<Relay> Relay::Start(Fd server, int cancel_fd, int* lib_fd,
                                    std::string* error) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
    *error = std::string("cannot create socket pair: ") + strerror(errno);
    return nullptr;
  }
  Fd lib(pair[0]);
  Fd pump(pair[1]);
  int on = 1;
  // The server socket may be a caller's descriptor of any kind: options that
  // do not apply to it are fine to miss.
  setsockopt(server.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  if (!SetNonBlocking(server.get()) || !SetNonBlocking(pump.get())) {
    *error = std::string("cannot set up relay: ") + strerror(errno);
    return nullptr;
  }
  std::unique_ptr<Relay> relay(
      new Relay(std::move(server), std::move(pump), cancel_fd));
  if (!relay->wake_.valid()) {
    *error = std::string("cannot create eventfd: ") + strerror(errno);
    return nullptr;
  }
  try {
    relay->thread_ = std::thread(&Relay::Pump, relay.get());
  } catch (const std::system_error& e) {
    *error = std::string("cannot start relay thread: ") + e.what();
    return nullptr;
  }
  *lib_fd = lib.Release();
  return relay;
}

Relay::Relay(Fd server, Fd pump_end, int cancel_fd)
    : server_(std::move(server)),
      pump_end_(std::move(pump_end)),
      cancel_fd_(cancel_fd),
      wake_(MakeEventFd()) {
  last_activity_ms_ = NowMs();
}

Relay::~Relay() { Join(); }

void Relay::Join() {
  if (thread_.joinable()) thread_.join();
}

void Relay::Touch() { last_activity_ms_.store(NowMs()); }

void Relay::BeginOperation(long timeout) {
  Touch();
  const long ms = timeout > 0 ? timeout * 1000 : 0;
  busy_.store(true);
  if (timeout_ms_.exchange(ms) != ms) SignalEventFd(wake_.get());
}

void Relay::EndOperation() { busy_.store(false); }

namespace {

// Bytes on their way in one direction.
class Pipe {
 public:
  Pipe() : data_(new char[kRelayBuffer]) {}
  bool empty() const { return start_ == end_; }
  bool full() const { return end_ == kRelayBuffer; }
  // Reads what fits; returns bytes read, 0 at end of file, -1 with errno.
  ssize_t Fill(int fd) {
    ssize_t n;
    do {
      n = recv(fd, data_.get() + end_, kRelayBuffer - end_, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0) end_ += static_cast<size_t>(n);
    return n;
  }
  // Writes what it can; returns false on a write error other than EAGAIN.
  bool Drain(int fd) {
    while (!empty()) {
      ssize_t n = send(fd, data_.get() + start_, end_ - start_, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
      start_ += static_cast<size_t>(n);
    }
    start_ = end_ = 0;
    return true;
  }

 private:
  std::unique_ptr<char[]> data_;
  size_t start_ = 0;
  size_t end_ = 0;
};

}  // namespace

void Relay::Pump() {
  const int server = server_.get();
  const int lib = pump_end_.get();
  Pipe up;    // libremctl -> server
  Pipe down;  // server -> libremctl
  bool lib_eof = false;
  bool server_eof = false;
  int one = 1;
  for (;;) {
    if (lib_eof && up.empty()) break;     // libremctl is done with us
    if (server_eof && down.empty()) break;  // all the server said is delivered
    const short server_events =
        (!server_eof && !down.full() ? POLLIN : 0) | (!up.empty() ? POLLOUT : 0);
    const short lib_events =
        (!lib_eof && !up.full() ? POLLIN : 0) | (!down.empty() ? POLLOUT : 0);
    // A side we want nothing from stays out of the poll: a hang-up on it would
    // otherwise wake us again and again while the other side catches up.
    pollfd fds[4] = {
        {server_events ? server : -1, server_events, 0},
        {lib_events ? lib : -1, lib_events, 0},
        {cancel_fd_, POLLIN, 0},
        {wake_.get(), POLLIN, 0},
    };
    const long timeout = timeout_ms_.load();
    int wait = -1;
    if (timeout > 0) {
      wait = static_cast<int>(timeout);
      if (busy_.load()) {
        int64_t left = last_activity_ms_.load() + timeout - NowMs();
        if (left <= 0) {
          timed_out_.store(true);
          break;
        }
        wait = static_cast<int>(left);
      }
    }
    int n = poll(fds, 4, wait);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (fds[2].revents) break;
    if (fds[3].revents) DrainEventFd(wake_.get());
    if (n == 0) continue;  // the loop head decides whether time ran out

    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      if (!server_eof && !down.full()) {
        ssize_t got = down.Fill(server);
        if (got > 0) {
          Touch();
          setsockopt(server, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
        } else if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
          server_eof = true;
          peer_closed_.store(true);
        }
      } else if (fds[0].revents & POLLERR) {
        server_eof = true;
        peer_closed_.store(true);
      }
    }
    if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) && !lib_eof &&
        !up.full()) {
      ssize_t got = up.Fill(lib);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        lib_eof = true;
      }
    }
    if (!up.empty()) {
      if (up.Drain(server)) {
        Touch();
      } else {
        peer_closed_.store(true);
        break;
      }
    }
    if (!down.empty() && !down.Drain(lib)) break;  // libremctl closed its end
  }
  // Said before libremctl can notice, so that no command is sent on a
  // connection that is already over.
  finished_.store(true);
  // Closing both descriptors here, not in the destructor, is what tells
  // libremctl (end of file) and the server (FIN) that the connection is over.
  shutdown(lib, SHUT_RDWR);
  shutdown(server, SHUT_RDWR);
  pump_end_.Reset();
  server_.Reset();
}

}  // namespace remctl_node
