// The threads we start. Each blocks every signal, so that a signal meant for
// the process (SIGINT, SIGTERM, SIGCHLD, a timer's SIGALRM...) is handled by
// Node's threads and never interrupts or kills one of ours in libremctl; and
// each has a name, which ps, gdb and /proc/<pid>/task/*/comm show.
//
// Nothing here knows about N-API.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <thread>
#include <utility>

namespace remctl_node {

// Starts body on a new thread named name (at most 15 characters). A new
// thread inherits its creator's signal mask, so the caller's is filled for
// the creation and restored after, also when it throws std::system_error as
// std::thread does. body must not throw; should it, the thread ends quietly
// rather than terminate the process.
template <typename Body>
std::thread StartThread(const char* name, Body body) {
  sigset_t all;
  sigset_t saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  struct RestoreMask {
    const sigset_t* saved;
    ~RestoreMask() { pthread_sigmask(SIG_SETMASK, saved, nullptr); }
  } restore{&saved};
  return std::thread([name, body = std::move(body)]() mutable {
    pthread_setname_np(pthread_self(), name);
    try {
      body();
    } catch (...) {
    }
  });
}

}  // namespace remctl_node
