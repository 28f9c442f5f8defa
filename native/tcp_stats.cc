// The kernel's own struct tcp_info (linux/tcp.h) goes on past glibc's copy
// in netinet/tcp.h, and the two headers cannot be included together: what
// needs the longer one lives here.
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>

#include "socket.h"

namespace remctl_node {

uint64_t Link::BytesReceived() const {
  tcp_info info{};
  socklen_t length = sizeof(info);
  if (getsockopt(socket_.get(), IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return 0;
  // Linux before 4.1 stops short of the field.
  if (length < offsetof(tcp_info, tcpi_bytes_received) + sizeof(info.tcpi_bytes_received)) return 0;
  return info.tcpi_bytes_received;
}

}  // namespace remctl_node
