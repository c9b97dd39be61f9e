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
#include "clip_encoder.h"
#include "layers.h"
#include "lora.h"
#include "weight_store.h"

namespace pia::nn {

struct CLIPTextConfig : CLIPEncoderConfig {
  int64_t vocab_size = 49408;
  int64_t max_position_embeddings = 77;
  int64_t eos_token_id = 49407;

  CLIPTextConfig() : CLIPEncoderConfig("text encoder") {}

  // config.json of a CLIPTextModel (or of a whole CLIPModel: its `text_config` is used, as
  // CLIPTextConfig.from_pretrained does). Unsupported values are E_UNSUPPORTED.
  static CLIPTextConfig from_json(const JsonValue& json);
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
  // `lora_scale`: the PatchedLoraProjection lora_scale of the attached LoRA (with_lora); every
  // targeted projection (q/k/v/out_proj, fc1, fc2) uses it.
  CLIPTextOutput forward(const std::vector<int64_t>& ids, int64_t batch, int64_t seq_len, bool output_hidden_states,
                         int clip_skip = -1, float lora_scale = 1.f) const;

  const CLIPTextConfig& config() const { return config_; }

  const std::vector<LoraTarget>& lora_targets() const { return lora_targets_; }
  // A copy sharing every weight, with these LoRA contributions in place of the current ones.
  std::shared_ptr<const CLIPTextModel> with_lora(const std::vector<LoraContribution>& contributions) const;
  // Textual inversion: a copy whose token embedding has `rows` [n, hidden] appended (ids vocab_size..
  // vocab_size+n-1), cast to the table's dtype as resize_token_embeddings + row assignment do.
  std::shared_ptr<const CLIPTextModel> with_added_tokens(const Tensor& rows) const;
  // Rows of the token embedding table (float32, host).
  Tensor token_embedding_rows(const std::vector<int64_t>& ids) const;

 private:
  CLIPTextConfig config_;
  std::shared_ptr<Backend> be_;
  Tensor token_embedding_, position_embedding_;
  Tensor token_embedding_host_;  // as read (the table textual inversion extends)
  std::vector<LoraTarget> lora_targets_;
  std::shared_ptr<const LoraState> lora_;
  CLIPEncoder encoder_;
  LayerNorm final_layer_norm_;
};

}  // namespace pia::nn
