#include "worker.h"

#include <cstring>
#include <utility>

#include "thread.h"

namespace remctl_node {

// The thread's last message: joins the thread on the JavaScript thread and
// keeps the worker alive until it has.
class EndedJob : public Job {
 public:
  explicit EndedJob(std::shared_ptr<Worker> worker)
      : worker_(std::move(worker)) {}
  void Execute(Connection&) override {}
  void Settle(Napi::Env env, Worker& worker) override { worker.Ended(env); }
  void Failed(const std::string&) override {}
  bool holds_loop() const override { return false; }

 private:
  std::shared_ptr<Worker> worker_;
};

void Workers::Add(std::shared_ptr<Worker> worker) {
  Worker* key = worker.get();
  live_.emplace(key, std::move(worker));
  // Cleanup hooks run last registered first, and each thread-safe function
  // has one that tears it down. Registered again after the newest, ours
  // runs before all of them, so the threads can still post and release
  // theirs while we wait for them.
  if (hooked_) napi_remove_env_cleanup_hook(env_, &Workers::Teardown, this);
  napi_add_env_cleanup_hook(env_, &Workers::Teardown, this);
  hooked_ = true;
}

// The environment shuts down (process exit, a worker_thread terminated) with
// threads still running.
void Workers::Teardown(void* arg) {
  Workers* workers = static_cast<Workers*>(arg);
  workers->hooked_ = false;
  std::unordered_map<Worker*, std::shared_ptr<Worker>> live;
  live.swap(workers->live_);
  for (auto& entry : live) entry.second->Interrupt();
  for (auto& entry : live) entry.second->Join();
  try {
    Napi::Env env(workers->env_);
    Napi::HandleScope scope(env);
    for (auto& entry : live) entry.second->AbandonUndelivered(env);
  } catch (const Napi::Error&) {
    // A terminating environment may refuse; the promises are freed anyway.
  }
}

Worker::~Worker() {
  // Only reached after the thread ended (EndedJob or the teardown joined
  // it); detaching is a guard against ever terminating the process.
  if (thread_.joinable()) thread_.detach();
}

bool Worker::Start(Napi::Env env) {
  tsfn_ = Tsfn::New(env, "remctl", 0, 1, this);
  tsfn_.Unref(env);
  try {
    std::shared_ptr<Worker> self = shared_from_this();
    thread_ = StartThread("remctl", [self] { self->Run(); });
  } catch (const std::exception& e) {
    tsfn_.Release();
    const auto* system = dynamic_cast<const std::system_error*>(&e);
    start_error_ = std::string("cannot start the connection's thread: ") +
                   (system != nullptr ? std::strerror(system->code().value()) : e.what());
    return false;
  }
  workers_ = env.GetInstanceData<Workers>();
  workers_->Add(shared_from_this());
  started_ = true;
  return true;
}

void Worker::RejectUnstarted(Napi::Env env, Job& job) {
  job.Reject(env, Napi::Error::New(env, start_error_).Value());
}

void Worker::Submit(Napi::Env env, std::unique_ptr<Job> job) {
  if (!started_ && !Start(env)) {
    RejectUnstarted(env, *job);
    return;
  }
  if (job->holds_loop() && loop_holders_++ == 0) tsfn_.Ref(env);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(job));
  }
  wake_.notify_one();
}

void Worker::Finish(Napi::Env env, std::unique_ptr<Job> last) {
  if (last) {
    if (!started_ && !Start(env)) {
      RejectUnstarted(env, *last);
      return;
    }
    if (last->holds_loop() && loop_holders_++ == 0) tsfn_.Ref(env);
  } else if (!started_) {
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (last) queue_.push_back(std::move(last));
    finishing_ = true;
  }
  wake_.notify_one();
}

void Worker::Run() {
  for (;;) {
    std::unique_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return !queue_.empty() || finishing_; });
      if (queue_.empty()) break;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      job->Execute(*connection_);
    } catch (const std::exception& e) {
      job->Failed(e.what());
    } catch (...) {
      job->Failed("internal error");
    }
    Post(std::move(job));
  }
  // Nothing of the connection may outlive its thread.
  connection_->Close();
  Post(std::make_unique<EndedJob>(shared_from_this()));
  tsfn_.Release();
}

void Worker::Post(std::unique_ptr<Job> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (tearing_down_) {
      undelivered_.push_back(std::move(job));
      return;
    }
  }
  Job* posted = job.release();
  if (tsfn_.NonBlockingCall(posted) != napi_ok) delete posted;
}

namespace {

// Settles the job; if that throws, rejects it with what was thrown, so that
// its promise is never left pending. Nothing may escape: this is called from
// C, at the top of a turn of the event loop.
void SettleOrReject(Napi::Env env, Worker& worker, Job& job) {
  try {
    try {
      job.Settle(env, worker);
    } catch (const Napi::Error& e) {
      job.Reject(env, e.Value());
    } catch (const std::exception& e) {
      job.Reject(env, Napi::Error::New(env, e.what()).Value());
    }
  } catch (const Napi::Error&) {
    // Not even the rejection could be made: the engine is out of memory or
    // shutting down, and there is no caller left to tell.
  } catch (const std::exception&) {
  }
}

}  // namespace

void Worker::CallJs(Napi::Env env, Napi::Function, Worker* worker, Job* job) {
  std::unique_ptr<Job> owned(job);
  if (job == nullptr || static_cast<napi_env>(env) == nullptr) return;
  SettleOrReject(env, *worker, *job);
  worker->Settled(env, job);
}

void Worker::Settled(Napi::Env env, Job* job) {
  if (job->holds_loop() && --loop_holders_ == 0) tsfn_.Unref(env);
}

void Worker::Ended(Napi::Env env) {
  if (workers_ != nullptr) workers_->Remove(this);
  workers_ = nullptr;
  if (thread_.joinable()) thread_.join();
}

void Worker::Interrupt() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    finishing_ = true;
    tearing_down_ = true;
    // What is still queued never runs: a call after the cancel would only
    // wait again, on a connection nobody is left to cancel.
    for (std::unique_ptr<Job>& job : queue_) undelivered_.push_back(std::move(job));
    queue_.clear();
  }
  wake_.notify_one();
  Cancel();
}

void Worker::Join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::AbandonUndelivered(Napi::Env env) {
  std::vector<std::unique_ptr<Job>> jobs;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs.swap(undelivered_);
  }
  for (std::unique_ptr<Job>& job : jobs) {
    try {
      job->Abandon(env);
    } catch (const Napi::Error&) {
      // A terminating environment may refuse; the promise is freed anyway.
    }
  }
}

}  // namespace remctl_node
