#include "engine.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <utility>

#include "thread.h"

namespace remctl_node {

namespace {

// Threads of ours that stay idle, waiting for the next call that may block
// (an open, most often), and for how long: enough that a service's opens
// never wait for a thread to start, few enough to cost nothing.
constexpr size_t kMaxIdleThreads = 2;
constexpr auto kIdleLinger = std::chrono::seconds(5);

template <typename Handle>
Handle* NewHandle() {
  return static_cast<Handle*>(std::calloc(1, sizeof(Handle)));
}

}  // namespace

Engine::Engine(napi_env env) : env_(env) {
  if (napi_get_uv_event_loop(env, &loop_) != napi_ok) {
    throw Napi::Error::New(Napi::Env(env), "cannot reach the event loop");
  }
  done_signal_ = NewHandle<uv_async_t>();
  uv_async_init(loop_, done_signal_, &Engine::OnDone);
  done_signal_->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(done_signal_));
  context_ = std::make_unique<Napi::AsyncContext>(Napi::Env(env), "remctl");
  napi_add_async_cleanup_hook(env, &Engine::Teardown, this, &teardown_);
}

Engine::~Engine() = default;

Engine& Engine::Of(Napi::Env env) { return *env.GetInstanceData<Engine>(); }

std::string Engine::Submit(std::unique_ptr<BlockingWork> work) {
  Reap();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (queue_.size() >= idle_) {
      try {
        std::thread thread = StartThread("remctl", [this] { Serve(); });
        running_.emplace(thread.get_id(), std::move(thread));
        threads_++;
      } catch (const std::system_error& e) {
        return std::string("cannot start a thread for the connection: ") +
               std::strerror(e.code().value());
      }
    }
    queue_.push_back(std::move(work));
  }
  wake_.notify_one();
  if (outstanding_++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(done_signal_));
  return std::string();
}

void Engine::Serve() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    if (!queue_.empty()) {
      std::unique_ptr<BlockingWork> work = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      work->Run();
      lock.lock();
      done_.push_back(std::move(work));
      if (!quit_) uv_async_send(done_signal_);
      continue;
    }
    if (quit_ || idle_ >= kMaxIdleThreads) break;
    idle_++;
    const bool woken =
        wake_.wait_for(lock, kIdleLinger, [this] { return !queue_.empty() || quit_; });
    idle_--;
    if (!woken) break;
  }
  threads_--;
  ended_threads_.push_back(std::this_thread::get_id());
  ended_.notify_all();
}

void Engine::Reap() {
  std::vector<std::thread> ended;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::thread::id id : ended_threads_) {
      auto found = running_.find(id);
      if (found == running_.end()) continue;
      ended.push_back(std::move(found->second));
      running_.erase(found);
    }
    ended_threads_.clear();
  }
  for (std::thread& thread : ended) thread.join();
}

std::pair<size_t, size_t> Engine::threads() {
  std::lock_guard<std::mutex> lock(mutex_);
  return {threads_, idle_};
}

void Engine::OnDone(uv_async_t* async) {
  Engine* engine = static_cast<Engine*>(async->data);
  std::vector<std::unique_ptr<BlockingWork>> done;
  {
    std::lock_guard<std::mutex> lock(engine->mutex_);
    done.swap(engine->done_);
  }
  engine->Reap();
  if (done.empty()) return;
  engine->outstanding_ -= done.size();
  if (engine->outstanding_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(engine->done_signal_));
  engine->AsCallback([&done] {
    for (std::unique_ptr<BlockingWork>& work : done) {
      try {
        work->Done();
      } catch (const Napi::Error&) {
      } catch (const std::exception&) {
      }
    }
  });
}

void Engine::Close(uv_handle_t* handle) {
  closing_++;
  handle->data = this;
  uv_close(handle, [](uv_handle_t* closed) {
    Engine* engine = static_cast<Engine*>(closed->data);
    std::free(closed);
    engine->Closed();
  });
}

void Engine::Closed() {
  if (--closing_ == 0 && stopping_ && teardown_ != nullptr) {
    napi_async_cleanup_hook_handle hook = teardown_;
    teardown_ = nullptr;
    napi_remove_async_cleanup_hook(hook);
  }
}

// The environment exits (the process, or a worker_thread terminated): every
// connection is cancelled before any thread is waited for, so they wind down
// together; nothing is settled any more; every handle is closed before the
// loop is.
void Engine::Teardown(napi_async_cleanup_hook_handle, void* arg) {
  Engine* engine = static_cast<Engine*>(arg);
  engine->stopping_ = true;
  for (Conn* conn : engine->conns_) conn->connection().Cancel();
  std::deque<std::unique_ptr<BlockingWork>> queued;
  std::vector<std::unique_ptr<BlockingWork>> done;
  {
    std::unique_lock<std::mutex> lock(engine->mutex_);
    engine->quit_ = true;
    queued.swap(engine->queue_);
    engine->wake_.notify_all();
    engine->ended_.wait(lock, [engine] { return engine->threads_ == 0; });
    done.swap(engine->done_);
  }
  engine->Reap();
  {
    Napi::Env env(engine->env_);
    Napi::HandleScope scope(env);
    std::vector<Conn*> conns(engine->conns_.begin(), engine->conns_.end());
    for (Conn* conn : conns) conn->Stop();
    // Freed only now, with every connection stopped: the works hold them.
    queued.clear();
    done.clear();
  }
  engine->context_.reset();
  // Counted as closing until its callback, so the hook cannot end before it.
  engine->closing_++;
  engine->Close(reinterpret_cast<uv_handle_t*>(engine->done_signal_));
  engine->done_signal_ = nullptr;
  engine->Closed();
}

Op::Op(Napi::Env env, Napi::Value settle) {
  if (!settle.IsFunction()) throw Napi::TypeError::New(env, "settle must be a function");
  settle_ = Napi::Persistent(settle.As<Napi::Function>());
}

void Op::Settle(Napi::Env env, Conn& conn) {
  if (settle_.IsEmpty()) return;
  Napi::FunctionReference settle = std::move(settle_);
  std::vector<napi_value> values;
  values.reserve(9);
  values.push_back(env.Undefined());
  try {
    Values(env, conn, values);
  } catch (const Napi::Error& e) {
    values.resize(1);
    values[0] = e.Value();
  }
  settle.Call(values);
}

// The head operation's Block(), on a thread of ours.
class Conn::BlockStep : public BlockingWork {
 public:
  BlockStep(std::shared_ptr<Conn> conn, Op* op) : conn_(std::move(conn)), op_(op) {}
  void Run() override {
    Connection& connection = conn_->connection();
    try {
      op_->Block(connection);
    } catch (const std::exception& e) {
      op_->Fail({false, e.what(), Failure::kSystem, {}});
    }
    connection.SetBlocking(false);
  }
  void Done() override { conn_->BlockDone(); }

 private:
  std::shared_ptr<Conn> conn_;
  Op* op_;
};

Conn::Conn(Engine& engine)
    : engine_(engine), connection_(std::make_shared<Connection>()) {
  engine_.Add(this);
}

Conn::~Conn() {
  engine_.Remove(this);
  if (poll_ != nullptr) engine_.Close(reinterpret_cast<uv_handle_t*>(poll_));
  if (timer_ != nullptr) engine_.Close(reinterpret_cast<uv_handle_t*>(timer_));
}

void Conn::Enqueue(std::unique_ptr<Op> op) {
  if (stopped_) {
    op->Abandon();
    return;
  }
  queue_.push_back(std::move(op));
  if (!keep_) keep_ = shared_from_this();
  Pump();
}

void Conn::Cancel() {
  connection_->Cancel();
  if (blocking_) return;  // the thread's call returns, and BlockDone pumps
  StopWaiting();
  Pump();
}

void Conn::Abandon() {
  connection_->Cancel();
  if (idle() || stopped_) return;
  // Settled from a turn of the loop, not from a finalizer; the operations
  // keep this alive until they are (see Pump).
  StopWaiting();
  if (blocking_) return;
  ArmTimer(0);
  if (timer_ == nullptr) {
    timer_ = NewHandle<uv_timer_t>();
    uv_timer_init(engine_.loop(), timer_);
    timer_->data = this;
  }
  uv_ref(reinterpret_cast<uv_handle_t*>(timer_));
  uv_timer_start(timer_, &Conn::OnTimer, 0, 0);
}

void Conn::Stop() {
  // Freed, if nothing else holds it, once this returns.
  std::shared_ptr<Conn> self = std::move(keep_);
  stopped_ = true;
  for (std::unique_ptr<Op>& op : queue_) op->Abandon();
  queue_.clear();
  Unwatch();
  if (timer_ != nullptr) {
    engine_.Close(reinterpret_cast<uv_handle_t*>(timer_));
    timer_ = nullptr;
  }
  connection_->Close();
}

void Conn::Pump() {
  if (pumping_) {
    again_ = true;
    return;
  }
  // Settling can drop the last reference to this (an abandoned connection
  // whose operations kept it alive): only once this returns.
  std::shared_ptr<Conn> self = shared_from_this();
  pumping_ = true;
  Napi::Env env(engine_.env());
  while (!blocking_ && !stopped_ && !queue_.empty()) {
    again_ = false;
    Op& op = *queue_.front();
    const Step step = op.Advance(*this);
    if (step == Step::kRead) {
      Watch();
      if (wanted_) {
        ArmTimer(op.idle_timeout_ms());
        break;
      }
      continue;  // Watch failed the operation
    }
    if (step == Step::kBlock) {
      StopWaiting();
      if (op.reconnects()) {
        Unwatch();
      } else {
        // The thread reads the socket: a poll would wake the loop for it.
        Pause();
      }
      connection_->SetBlocking(true);
      blocking_ = true;
      std::string error = engine_.Submit(std::make_unique<BlockStep>(self, &op));
      if (error.empty()) {
        ArmTimer(op.idle_timeout_ms());
        break;
      }
      blocking_ = false;
      connection_->SetBlocking(false);
      op.Fail({false, std::move(error), Failure::kSystem, {}});
      continue;  // Advance reports the failure
    }
    std::unique_ptr<Op> done = std::move(queue_.front());
    queue_.pop_front();
    if (timer_ != nullptr) uv_timer_stop(timer_);
    timer_timeout_ = 0;
    try {
      done->Settle(env, *this);
    } catch (const Napi::Error&) {
      // JavaScript cannot run (the environment is ending): nobody to tell.
    }
  }
  if (queue_.empty()) StopWaiting();
  pumping_ = false;
  if (again_ && !blocking_ && !queue_.empty()) {
    again_ = false;
    Pump();
  }
  if (queue_.empty() && !blocking_) keep_.reset();
}

void Conn::BlockDone() {
  blocking_ = false;
  if (timer_ != nullptr) uv_timer_stop(timer_);
  timer_timeout_ = 0;
  Pump();
}

void Conn::Watch() {
  const int fd = connection_->socket_fd();
  if (poll_ != nullptr && polled_fd_ != fd) Unwatch();
  if (poll_ == nullptr) {
    poll_ = NewHandle<uv_poll_t>();
    const int status = fd < 0 ? UV_EBADF : uv_poll_init(engine_.loop(), poll_, fd);
    if (status != 0) {
      std::free(poll_);
      poll_ = nullptr;
      queue_.front()->Fail({false, std::string("cannot watch the connection: ") + uv_strerror(status),
                            Failure::kSystem, {-status, "", "epoll_ctl", "", 0}});
      return;
    }
    poll_->data = this;
    polled_fd_ = fd;
    // uv_poll_init made the socket non-blocking.
    connection_->SocketFlagsChanged();
  }
  if (!reading_) {
    uv_poll_start(poll_, UV_READABLE | UV_DISCONNECT, &Conn::OnReadable);
    reading_ = true;
  }
  if (!wanted_) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
  wanted_ = true;
}

void Conn::Unwatch() {
  reading_ = false;
  wanted_ = false;
  if (poll_ == nullptr) return;
  engine_.Close(reinterpret_cast<uv_handle_t*>(poll_));
  poll_ = nullptr;
  polled_fd_ = -1;
}

void Conn::Pause() {
  if (poll_ == nullptr || !reading_) return;
  uv_poll_stop(poll_);
  reading_ = false;
}

void Conn::StopWaiting() {
  if (wanted_ && poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  wanted_ = false;
  if (timer_ != nullptr) uv_timer_stop(timer_);
  timer_timeout_ = 0;
}

void Conn::ArmTimer(int64_t timeout) {
  if (timeout <= 0) {
    if (timer_ != nullptr) uv_timer_stop(timer_);
    timer_timeout_ = 0;
    return;
  }
  // Already counting this wait's silence: bytes seen since reset the count.
  if (timer_timeout_ == timeout) return;
  if (timer_ == nullptr) {
    timer_ = NewHandle<uv_timer_t>();
    uv_timer_init(engine_.loop(), timer_);
    timer_->data = this;
  }
  uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
  timer_timeout_ = timeout;
  last_activity_ = uv_now(engine_.loop());
  uv_timer_start(timer_, &Conn::OnTimer, static_cast<uint64_t>(timeout), 0);
}

void Conn::OnReadable(uv_poll_t* poll, int, int) {
  Conn* conn = static_cast<Conn*>(poll->data);
  if (!conn->wanted_) {
    // Readable with nobody waiting (the server closed, say): a level-
    // triggered poll would fire again and again.
    uv_poll_stop(poll);
    conn->reading_ = false;
    return;
  }
  conn->last_activity_ = uv_now(conn->engine_.loop());
  conn->connection_->Woken();
  conn->engine_.AsCallback([conn] { conn->Pump(); });
}

void Conn::OnTimer(uv_timer_t* timer) {
  Conn* conn = static_cast<Conn*>(timer->data);
  conn->engine_.AsCallback([conn] { conn->TimedOut(); });
}

void Conn::TimedOut() {
  if (queue_.empty()) return;
  if (blocking_) {
    // The thread's call returns once its socket is shut down.
    if (timer_timeout_ == 0) return;
    const int64_t left = connection_->TimeOutIfIdle(timer_timeout_);
    if (left > 0) uv_timer_start(timer_, &Conn::OnTimer, static_cast<uint64_t>(left), 0);
    return;
  }
  if (connection_->cancelled() || timer_timeout_ == 0) {
    Pump();
    return;
  }
  // Bytes short of a whole token wake nobody: the kernel's clock counts them.
  const uint64_t now = uv_now(engine_.loop());
  int64_t idle = static_cast<int64_t>(now - last_activity_);
  const int64_t kernel_idle = connection_->IdleMs();
  if (kernel_idle >= 0 && kernel_idle < idle) idle = kernel_idle;
  const int64_t timeout_ms = timer_timeout_;
  if (idle < timeout_ms) {
    uv_timer_start(timer_, &Conn::OnTimer, static_cast<uint64_t>(timeout_ms - idle), 0);
    return;
  }
  StopWaiting();
  // As libremctl on a timeout: the connection ends; a later command reopens.
  connection_->TimeOut();
  queue_.front()->Fail({false, "error receiving token: timed out", Failure::kTimeout, {}});
  Pump();
}

}  // namespace remctl_node
