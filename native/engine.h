// The engine: each open connection is watched by a uv_poll_t on its
// environment's own event loop, and libremctl is called right there whenever
// the call cannot block (its whole token is buffered, its command fits the
// free send space). What may block (resolving, connecting, the GSS-API
// handshake, a noop's round trip, a token larger than the socket can buffer,
// a command larger than the send space) runs on threads we own, never
// libuv's pool: as many as there are such calls at once, so a KDC that does
// not answer one open never holds up another, and gone once idle.
#pragma once

#include <napi.h>
#include <uv.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "connection.h"

namespace remctl_node {

class Conn;

// One call that may block, taken by a thread of ours. Run must not throw.
class BlockingWork {
 public:
  virtual ~BlockingWork() = default;
  virtual void Run() = 0;
  // The loop's thread, inside a HandleScope and a CallbackScope.
  virtual void Done() = 0;
};

// What one environment (the main thread, a worker_thread) runs: its loop,
// its threads, its connections. The addon's instance data.
class Engine {
 public:
  explicit Engine(napi_env env);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  static Engine& Of(Napi::Env env);

  napi_env env() const { return env_; }
  uv_loop_t* loop() const { return loop_; }
  bool stopping() const { return stopping_; }

  // Loop thread. Hands the work to an idle thread of ours, starting one if
  // none is idle; the empty string, or why no thread could be started.
  std::string Submit(std::unique_ptr<BlockingWork> work);

  // Loop thread: runs body as a libuv callback that may settle promises must,
  // inside a HandleScope and a CallbackScope (which runs the microtasks
  // those settlements queued once body returns).
  template <typename Body>
  void AsCallback(Body&& body) {
    Napi::Env env(env_);
    Napi::HandleScope scope(env);
    Napi::CallbackScope callback(env, *context_);
    try {
      body();
    } catch (const Napi::Error&) {
      // Nothing can be thrown out of a libuv callback; a settlement that
      // failed leaves nothing to tell.
    } catch (const std::exception&) {
    }
  }

  void Add(Conn* conn) { conns_.insert(conn); }
  void Remove(Conn* conn) { conns_.erase(conn); }
  // uv_close for a handle allocated with new; the engine's teardown waits
  // for every close to complete.
  void Close(uv_handle_t* handle);

  // Threads of ours alive now, and how many of them are idle, waiting for
  // work: for the tests and the bench.
  std::pair<size_t, size_t> threads();

 private:
  static void OnDone(uv_async_t* async);
  static void Teardown(napi_async_cleanup_hook_handle handle, void* arg);
  void Serve();
  void Closed();
  // Loop thread: joins the threads that have ended. Every thread is joined,
  // never detached: a worker_thread's environment unloads the addon when it
  // ends, and no thread may still be running its code then.
  void Reap();

  napi_env env_;
  uv_loop_t* loop_ = nullptr;
  uv_async_t* done_signal_ = nullptr;
  std::unique_ptr<Napi::AsyncContext> context_;
  std::unordered_set<Conn*> conns_;
  size_t outstanding_ = 0;  // loop thread: submitted, not yet done
  size_t closing_ = 0;      // loop thread: handles whose close is under way
  bool stopping_ = false;   // loop thread
  napi_async_cleanup_hook_handle teardown_ = nullptr;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable ended_;
  std::deque<std::unique_ptr<BlockingWork>> queue_;  // under mutex_
  std::vector<std::unique_ptr<BlockingWork>> done_;  // under mutex_
  size_t threads_ = 0;                               // under mutex_
  std::unordered_map<std::thread::id, std::thread> running_;  // under mutex_
  std::vector<std::thread::id> ended_threads_;       // under mutex_
  size_t idle_ = 0;                                  // under mutex_
  bool quit_ = false;                                // under mutex_
};

// One step of an operation, as far as it can go without blocking.
enum class Step {
  kDone,   // settled: its promise can be resolved
  kRead,   // waits until the socket has the next token whole
  kBlock,  // must run Block() on a thread of ours, then Advance again
};

// One call on a connection: open, command, output, run... Advance and Settle
// run on the loop's thread; Block on a thread of ours, while the loop leaves
// the connection alone.
class Op {
 public:
  // settle(error, ...values) is JavaScript's (see lib/addon.ts): a function
  // reference, unlike a napi_deferred, can be freed when the environment
  // ends with the operation still under way.
  Op(Napi::Env env, Napi::Value settle);
  virtual ~Op() = default;

  virtual Step Advance(Conn& conn) = 0;
  virtual void Block(Connection& connection) {}
  // The values settle is called with, after the error. An operation
  // settling with one value overrides Result; a run, with its eight,
  // overrides Values (no array to build and take apart).
  virtual void Values(Napi::Env env, Conn& conn, std::vector<napi_value>& values) {
    values.push_back(Result(env, conn));
  }
  virtual Napi::Value Result(Napi::Env env, Conn& conn) { return env.Undefined(); }
  // Ended from outside (a timeout on the loop, a cancel): fails with status.
  virtual void Fail(Status status) = 0;
  // Milliseconds of silence that end a wait; 0 for none.
  virtual int64_t idle_timeout_ms() const = 0;
  // Whether Block may replace or close the connection's socket.
  virtual bool reconnects() const { return true; }

  // Hands JavaScript the result, or the error that making it raised.
  void Settle(Napi::Env env, Conn& conn);
  // The environment is going away: lets go of the callback without a call.
  void Abandon() { settle_.Reset(); }

 private:
  Napi::FunctionReference settle_;
};

// The loop's side of one connection: its operations, run one at a time in
// the order they were made, and the poll and timer that drive them.
class Conn : public std::enable_shared_from_this<Conn> {
 public:
  explicit Conn(Engine& engine);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  Connection& connection() { return *connection_; }
  Engine& engine() { return engine_; }

  // Loop thread. Queues op; it starts at once if nothing is before it.
  void Enqueue(std::unique_ptr<Op> op);
  // Loop thread: ends what the connection is doing or waiting on; every
  // operation queued or made later fails without touching the network.
  void Cancel();
  // The object that owns this was collected without a close: cancel, and
  // let what is under way end with "operation cancelled".
  void Abandon();
  bool idle() const { return queue_.empty() && !blocking_; }

  // For ops, before they change the socket on the loop's thread.
  void Unwatch();

  // The error text of the last settled operation, as remctl_error reports it.
  std::string last_error = "no error";

  // The environment's teardown: every operation is dropped unsettled.
  void Stop();

 private:
  class BlockStep;
  void Pump();
  void Watch();
  void ArmTimer(int64_t timeout_ms);
  void StopWaiting();
  // Stops polling the socket, keeping the poll for the next wait.
  void Pause();
  static void OnReadable(uv_poll_t* poll, int status, int events);
  static void OnTimer(uv_timer_t* timer);
  void TimedOut();
  void BlockDone();

  Engine& engine_;
  std::shared_ptr<Connection> connection_;
  std::deque<std::unique_ptr<Op>> queue_;
  // Held while operations are queued or under way, so that they settle even
  // after the handle that made them was collected.
  std::shared_ptr<Conn> keep_;
  bool pumping_ = false;
  bool again_ = false;
  bool blocking_ = false;   // the head op is on a thread of ours
  bool stopped_ = false;
  uv_poll_t* poll_ = nullptr;
  int polled_fd_ = -1;
  // The poll is started, and whether an operation waits on it. Between
  // operations it stays started but unreferenced, so that a session's next
  // wait costs no epoll_ctl; it stops only if it fires with nobody waiting.
  bool reading_ = false;
  bool wanted_ = false;
  uv_timer_t* timer_ = nullptr;
  int64_t timer_timeout_ = 0;  // milliseconds, while the timer runs
  uint64_t last_activity_ = 0;
};

}  // namespace remctl_node
