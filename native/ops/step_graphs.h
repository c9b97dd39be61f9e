#pragma once
// One network step (a UNet forward) captured once its shapes are known and replayed afterwards
// (issue 7: CUDA graphs), written against Backend's abstract capture API so that native/nn never
// sees CUDA.
//
// A step is `body(inputs on the device) -> output on the device`. Per cache key (everything that
// changes the body's kernels or their arguments; the inputs' shapes are added here):
//   1st call: eager (warm-up: cuBLASLt plans, allocator blocks and any autotuning happen outside a
//             capture);
//   2nd call: the inputs are copied into buffers the entry owns, the body is recorded from them,
//             and the recording is launched once for this call's result;
//   later:    the inputs are copied into the same buffers, the recording is launched again.
// A replay runs the kernels the eager run issues, in its order, on the same inputs: the results
// are bitwise equal. A recording that fails (an op that cannot be captured, out of memory) is
// discarded and its key runs eagerly from then on; the call still returns the eager result.
// An entry captured under another weights generation (weights offloaded and back) is dropped.
#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend.h"

namespace pia {

// PIA_CUDA_GRAPHS=1 in the environment (read once): models capture their steps by default.
bool step_capture_enabled_by_env();

using StepBody = std::function<Tensor(const std::vector<Tensor>& inputs)>;

// The step without a cache: inputs onto the device (from_host, or as they are when already
// there), the body, the output back to the host.
Tensor run_step_eagerly(Backend& be, const std::vector<Tensor>& inputs, const StepBody& body);

class StepGraphCache {
 public:
  explicit StepGraphCache(std::shared_ptr<Backend> backend, size_t capacity = 4);
  ~StepGraphCache();
  StepGraphCache(const StepGraphCache&) = delete;
  StepGraphCache& operator=(const StepGraphCache&) = delete;

  // `inputs`: host float32 tensors or tensors of the backend (their contents may change from call
  // to call; nothing else the body reads may). Returns the output as a host float32 tensor. A
  // recorded step cannot stop between layers: `cancel` is checked before and after its launch
  // (E_ABORTED); eager runs check it wherever the body does.
  Tensor run(const std::string& key, const std::vector<Tensor>& inputs, const StepBody& body,
             const std::atomic<bool>* cancel = nullptr);

  struct Stats {
    size_t eager = 0, captures = 0, replays = 0, capture_failures = 0, evictions = 0, invalidations = 0;
  };
  Stats stats() const;
  size_t size() const;
  // Whether the key (as given to run, with these inputs) has fallen back to eager runs for good.
  bool eager_only(const std::string& key, const std::vector<Tensor>& inputs) const;
  // Frees every recording (and its memory).
  void clear();

 private:
  struct Entry;
  std::shared_ptr<Backend> be_;
  size_t capacity_;
  mutable std::mutex mu_;  // held for a whole run: an entry's buffers serve one call at a time
  std::list<std::unique_ptr<Entry>> entries_;  // most recently used first
  uint64_t generation_seen_ = 0;
  Stats stats_;
};

}  // namespace pia
