#pragma once
// transformers' CLIPTextModel (modeling_clip.py, v4.37): token + position embeddings, pre-LN
// encoder layers with causal self-attention and a quick_gelu/gelu MLP, final_layer_norm.
// Weights by their Hugging Face keys (`text_model.embeddings.token_embedding.weight`, ...).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../core/json.h"
#include "../ops/backend.h"
#include "layers.h"
#include "weight_store.h"

namespace pia::nn {

struct CLIPTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 512;
  int64_t intermediate_size = 2048;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 8;
  int64_t max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;
  int64_t eos_token_id = 49407;

  // config.json of a CLIPTextModel (or of a whole CLIPModel: its `text_config` is used, as
  // CLIPTextConfig.from_pretrained does). Unsupported values are E_UNSUPPORTED.
  static CLIPTextConfig from_json(const JsonValue& json);
  Activation activation() const;
};

struct CLIPTextOutput {
  Tensor last_hidden_state;           // [B, S, D] host float32
  Tensor pooler_output;               // [B, D]
  std::vector<Tensor> hidden_states;  // embeddings output, then each layer (before final_layer_norm)
};

class CLIPTextModel {
 public:
  // Binds every weight (E_WEIGHTS_MISMATCH naming the key on a missing key, a wrong shape or a
  // key the network does not use; the `position_ids` buffer is allowed).
  CLIPTextModel(const CLIPTextConfig& config, WeightStore& weights, std::shared_ptr<Backend> backend);

  // ids: `batch` rows of `seq_len` token ids (row-major). clip_skip < 0: last_hidden_state as
  // transformers returns it; k >= 0: final_layer_norm(hidden_states[-(k+1)]), what diffusers'
  // encode_prompt computes for clip_skip=k. pooler_output always comes from the true last layer.
  CLIPTextOutput forward(const std::vector<int64_t>& ids, int64_t batch, int64_t seq_len, bool output_hidden_states,
                         int clip_skip = -1) const;

  const CLIPTextConfig& config() const { return config_; }

 private:
  struct EncoderLayer {
    LayerNorm layer_norm1, layer_norm2;
    Linear q_proj, k_proj, v_proj, out_proj, fc1, fc2;
  };

  CLIPTextConfig config_;
  std::shared_ptr<Backend> be_;
  Tensor token_embedding_, position_embedding_;
  std::vector<EncoderLayer> layers_;
  LayerNorm final_layer_norm_;
};

}  // namespace pia::nn
