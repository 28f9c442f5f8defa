// The thread a connection owns: it runs the connection's jobs one at a time,
// in the order they were submitted, and hands each result back to the
// JavaScript thread through a thread-safe function that settles a Promise.
// Blocking libremctl calls never run on the libuv threadpool or the
// JavaScript thread.
#pragma once

#include <napi.h>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include "connection.h"

namespace remctl_node {

class Worker;

// One unit of work. Execute runs on the worker thread and must not throw;
// Settle runs on the JavaScript thread, or with a null env when the
// environment is going away and nothing may be settled any more.
class Job {
 public:
  virtual ~Job() = default;
  virtual void Execute(Connection& connection) = 0;
  virtual void Settle(Napi::Env env, Worker& worker) = 0;
  // Execute threw: the job must settle as a failure with this text.
  virtual void Failed(const std::string& message) = 0;
  // JavaScript thread: the job cannot settle as it should (Settle threw, or
  // it never ran because no thread could be started); it fails with error.
  virtual void Reject(Napi::Env env, Napi::Value error) {}
  // A job that keeps the event loop alive until it is settled.
  virtual bool holds_loop() const { return true; }
  // The environment is going away: settle with nothing, only to free what
  // the environment holds for the job.
  virtual void Abandon(Napi::Env env) {}
};

// A job whose result settles a Promise, once: N-API frees the deferred when
// it is first settled, whether or not that succeeded, so any later attempt
// is ignored.
class PromiseJob : public Job {
 public:
  explicit PromiseJob(Napi::Env env)
      : deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() const { return deferred_.Promise(); }
  void Reject(Napi::Env env, Napi::Value error) override {
    if (settled_) return;
    settled_ = true;
    deferred_.Reject(error);
  }
  void Abandon(Napi::Env env) override { Reject(env, env.Undefined()); }

 protected:
  void Resolve(Napi::Value value) {
    if (settled_) return;
    settled_ = true;
    deferred_.Resolve(value);
  }

 private:
  Napi::Promise::Deferred deferred_;
  bool settled_ = false;
};

// The workers of one environment whose thread was started, and the one
// cleanup hook that ends them all when the environment exits: it cancels
// every connection before it joins any thread, so the connections wind down
// together. The addon's instance data; JavaScript thread only.
class Workers {
 public:
  explicit Workers(napi_env env) : env_(env) {}
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  // A worker whose thread was just started, with its thread-safe function.
  void Add(std::shared_ptr<Worker> worker);
  // A worker whose thread has ended and been joined.
  void Remove(Worker* worker) { live_.erase(worker); }

 private:
  static void Teardown(void* arg);

  napi_env env_;
  std::unordered_map<Worker*, std::shared_ptr<Worker>> live_;
  bool hooked_ = false;
};

class Worker : public std::enable_shared_from_this<Worker> {
 public:
  Worker() : connection_(std::make_shared<Connection>()) {}
  ~Worker();

  // JavaScript thread. Queues a job, starting the thread on first use; if
  // the thread cannot be started, rejects the job with the reason instead.
  void Submit(Napi::Env env, std::unique_ptr<Job> job);
  // JavaScript thread or a finalizer. Queues a last job (which may be null)
  // after which the thread ends; rejects it as Submit does. A null job never
  // starts a thread, so a finalizer never needs one.
  void Finish(Napi::Env env, std::unique_ptr<Job> last);
  // Any thread: interrupts what the connection is waiting on.
  void Cancel() { connection_->Cancel(); }

  // The connection, for a synchronous call on the JavaScript thread; only
  // while no thread was ever started, so nothing else can be using it.
  Connection* idle_connection() { return started_ ? nullptr : connection_.get(); }

  // The error text of the last settled operation, as remctl_error reports
  // it. Only read and written on the JavaScript thread.
  std::string last_error = "no error";

 private:
  static void CallJs(Napi::Env env, Napi::Function, Worker* worker, Job* job);
  bool Start(Napi::Env env);
  void RejectUnstarted(Napi::Env env, Job& job);
  void Run();
  void Post(std::unique_ptr<Job> job);
  void Settled(Napi::Env env, Job* job);
  void Ended(Napi::Env env);
  // The environment's teardown, in three steps over all its workers.
  void Interrupt();
  void Join();
  void AbandonUndelivered(Napi::Env env);

  using Tsfn = Napi::TypedThreadSafeFunction<Worker, Job, &Worker::CallJs>;

  std::shared_ptr<Connection> connection_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool finishing_ = false;  // no job after the last one queued
  std::thread thread_;
  Tsfn tsfn_;
  bool started_ = false;
  std::string start_error_;  // why the thread could not be started
  size_t loop_holders_ = 0;  // JavaScript thread only
  Workers* workers_ = nullptr;  // while the thread runs
  // Set by the teardown: the thread keeps its results here instead of
  // posting them, and the teardown settles them once the thread has ended,
  // while the environment can still free their promises. Jobs still queued
  // go here too, never run.
  bool tearing_down_ = false;  // under mutex_
  std::vector<std::unique_ptr<Job>> undelivered_;  // under mutex_

  friend class EndedJob;
  friend class Workers;
};

}  // namespace remctl_node
