#include "step_graphs.h"

#include <cstdlib>
#include <exception>

#include "../core/errors.h"

namespace pia {

namespace {

void check_cancel(const std::atomic<bool>* cancel) {
  if (cancel && cancel->load(std::memory_order_relaxed)) throw_error("E_ABORTED", "the call was cancelled");
}

// The caller's key names what changes the kernels; the inputs' shapes change them too.
std::string full_key(const std::string& key, const std::vector<Tensor>& inputs) {
  std::string k = key;
  for (const Tensor& t : inputs) k += "|" + shape_str(t.shape());
  return k;
}

}  // namespace

bool step_capture_enabled_by_env() {
  static const bool on = [] {
    const char* v = std::getenv("PIA_CUDA_GRAPHS");
    return v && std::string(v) == "1";
  }();
  return on;
}

Tensor run_step_eagerly(Backend& be, const std::vector<Tensor>& inputs, const StepBody& body) {
  std::vector<Tensor> on_device;
  on_device.reserve(inputs.size());
  for (const Tensor& x : inputs) on_device.push_back(x.device() == Device::CPU ? be.from_host(x) : x);
  Tensor out = body(on_device);
  on_device.clear();
  return be.to_host(out);
}

struct StepGraphCache::Entry {
  enum class State { Warm, Captured, EagerOnly };
  std::string key;
  State state = State::Warm;
  // Declared first so that it goes last: the tensors below live in its pool, and a block still
  // held when the pool is freed would outlive it in the shared pool.
  std::unique_ptr<CapturedStep> step;
  std::vector<Tensor> buffers;  // what the recording reads its inputs from
  Tensor output;                // what it writes its result to
};

StepGraphCache::StepGraphCache(std::shared_ptr<Backend> backend, size_t capacity)
    : be_(std::move(backend)), capacity_(capacity ? capacity : 1) {}

StepGraphCache::~StepGraphCache() = default;

Tensor StepGraphCache::run(const std::string& key, const std::vector<Tensor>& inputs, const StepBody& body,
                           const std::atomic<bool>* cancel) {
  check_cancel(cancel);
  Backend& be = *be_;
  std::lock_guard<std::mutex> lock(mu_);
  if (!be.can_capture()) {
    ++stats_.eager;
    return run_step_eagerly(be, inputs, body);
  }
  const uint64_t generation = be.weights_generation();
  if (generation != generation_seen_) {
    stats_.invalidations += entries_.size();
    entries_.clear();
    generation_seen_ = generation;
  }

  const std::string k = full_key(key, inputs);
  auto it = entries_.begin();
  while (it != entries_.end() && (*it)->key != k) ++it;
  if (it == entries_.end()) {
    ++stats_.eager;
    Tensor out = run_step_eagerly(be, inputs, body);
    // Only a warm-up that ran to the end counts: one cut short (cancelled) may have left plans
    // or autotuning for the capture to do, which must not happen inside it.
    while (entries_.size() >= capacity_) {
      entries_.pop_back();  // the least recently used, with its recording and memory
      ++stats_.evictions;
    }
    auto e = std::make_unique<Entry>();
    e->key = k;
    entries_.push_front(std::move(e));
    return out;
  }
  entries_.splice(entries_.begin(), entries_, it);
  Entry& e = *entries_.front();

  if (e.state == Entry::State::EagerOnly) {
    ++stats_.eager;
    return run_step_eagerly(be, inputs, body);
  }
  if (e.state == Entry::State::Warm) {
    // Buffers are made and filled before the recording starts: host copies cannot be recorded,
    // and a recorded one would replay this call's host data forever.
    std::vector<Tensor> buffers;
    Tensor out;
    std::unique_ptr<CapturedStep> step;
    std::exception_ptr failure;
    try {
      for (const Tensor& x : inputs) {
        Tensor b = be.zeros(x.shape());
        be.copy_into(b, x);
        buffers.push_back(b);
      }
      be.begin_capture();
      try {
        out = body(buffers);
        step = be.end_capture();
      } catch (...) {
        out = Tensor();  // back to the pool before the pool goes
        be.abort_capture();
        throw;
      }
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure) {
      try {
        std::rethrow_exception(failure);
      } catch (const PiaException& x) {
        if (x.code() == "E_ABORTED") throw;  // not the recording's fault: try again next call
      } catch (...) {
      }
      e.state = Entry::State::EagerOnly;
      ++stats_.capture_failures;
      buffers.clear();
      check_cancel(cancel);
      ++stats_.eager;
      return run_step_eagerly(be, inputs, body);
    }
    e.step = std::move(step);
    e.buffers = std::move(buffers);
    e.output = out;
    e.state = Entry::State::Captured;
    ++stats_.captures;
  } else {
    for (size_t i = 0; i < inputs.size(); ++i) be.copy_into(e.buffers[i], inputs[i]);
  }

  check_cancel(cancel);
  bool launched = false;
  try {
    launched = e.step->launch();
  } catch (...) {
    entries_.pop_front();
    throw;
  }
  if (!launched) {
    // Invalidated after the generation check (weights moved on another thread): eager it is.
    entries_.pop_front();
    ++stats_.invalidations;
    ++stats_.eager;
    return run_step_eagerly(be, inputs, body);
  }
  ++stats_.replays;
  Tensor host;
  try {
    host = be.to_host(e.output);
  } catch (...) {
    entries_.pop_front();  // a launch that went wrong is not tried again
    throw;
  }
  check_cancel(cancel);
  return host;
}

StepGraphCache::Stats StepGraphCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

size_t StepGraphCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

bool StepGraphCache::eager_only(const std::string& key, const std::vector<Tensor>& inputs) const {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string k = full_key(key, inputs);
  for (const auto& e : entries_) {
    if (e->key == k) return e->state == Entry::State::EagerOnly;
  }
  return false;
}

void StepGraphCache::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.clear();
}

}  // namespace pia
