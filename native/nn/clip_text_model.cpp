#include "clip_text_model.h"

#include <cmath>
#include <cstring>
#include <numeric>

#include "../core/errors.h"

namespace pia::nn {

CLIPTextConfig CLIPTextConfig::from_json(const JsonValue& root) {
  CLIPTextConfig c;
  if (!root.is_object()) c.bad_config("<root>", "config.json must hold an object");
  const JsonValue* j = &root;
  // A CLIPModel config: CLIPTextConfig.from_pretrained reads its text_config.
  if (const JsonValue* mt = root.get("model_type"); mt && mt->is_string() && mt->string == "clip") {
    j = root.get("text_config");
    if (!j || !j->is_object()) c.bad_config("text_config", "is missing from a CLIPModel config");
  }
  c.vocab_size = c.positive_int(*j, "vocab_size", c.vocab_size);
  c.max_position_embeddings = c.positive_int(*j, "max_position_embeddings", c.max_position_embeddings);
  if (const JsonValue* v = j->get("eos_token_id"); v && v->kind != JsonValue::Kind::Null) {
    if (!v->is_uint()) c.bad_config("eos_token_id", "must be a non-negative integer");
    c.eos_token_id = int64_t(v->uinteger);
  }
  c.read_encoder_fields(*j);
  return c;
}

CLIPTextModel::CLIPTextModel(const CLIPTextConfig& config, WeightStore& w, std::shared_ptr<Backend> backend)
    : config_(config), be_(std::move(backend)) {
  Backend& be = *be_;
  const int64_t d = config_.hidden_size, ff = config_.intermediate_size;
  const float eps = float(config_.layer_norm_eps);
  w.set_label("text_encoder");
  // A persistent buffer in older checkpoints; transformers recreates it as arange.
  w.ignore_key("text_model.embeddings.position_ids");
  LoraTargetRecorder recorder(&lora_targets_);
  token_embedding_host_ = w.get("text_model.embeddings.token_embedding.weight", {config_.vocab_size, d});
  token_embedding_ = be.upload(token_embedding_host_);
  position_embedding_ =
      be.upload(w.get("text_model.embeddings.position_embedding.weight", {config_.max_position_embeddings, d}));
  // _create_4d_causal_attention_mask; diffusers passes no padding mask.
  encoder_.load(w, be, "text_model.encoder", config_.num_hidden_layers, d, ff, config_.num_attention_heads, eps,
                config_.activation(), /*causal=*/true);
  final_layer_norm_.load(w, be, "text_model.final_layer_norm", d, eps);
  w.check_all_used();
}

std::shared_ptr<const CLIPTextModel> CLIPTextModel::with_lora(const std::vector<LoraContribution>& contributions) const {
  auto copy = std::make_shared<CLIPTextModel>(*this);
  copy->lora_ = contributions.empty() ? nullptr : build_lora_state(*be_, lora_targets_, contributions);
  return copy;
}

std::shared_ptr<const CLIPTextModel> CLIPTextModel::with_added_tokens(const Tensor& rows) const {
  const int64_t d = config_.hidden_size, v = config_.vocab_size;
  PIA_CHECK(rows.dim() == 2 && rows.size(1) == d && rows.size(0) > 0, "E_INVALID_ARGUMENT",
            "token embedding rows must be [n, " + std::to_string(d) + "], got " + shape_str(rows.shape()));
  const int64_t n = rows.size(0);
  const DType dt = token_embedding_host_.dtype();
  Tensor table = Tensor::empty({v + n, d}, dt);
  const size_t row_bytes = size_t(d) * dtype_size(dt);
  std::memcpy(table.raw(), token_embedding_host_.contiguous().raw(), size_t(v) * row_bytes);
  Tensor added = rows.to(DType::F32).contiguous().to(dt);
  std::memcpy(static_cast<char*>(table.raw()) + size_t(v) * row_bytes, added.raw(), size_t(n) * row_bytes);
  auto copy = std::make_shared<CLIPTextModel>(*this);
  copy->token_embedding_host_ = table;
  copy->token_embedding_ = be_->upload(table);
  copy->config_.vocab_size = v + n;
  return copy;
}

Tensor CLIPTextModel::token_embedding_rows(const std::vector<int64_t>& ids) const {
  for (int64_t id : ids) {
    PIA_CHECK(id >= 0 && id < config_.vocab_size, "E_INVALID_ARGUMENT",
              "token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(config_.vocab_size) + ")");
  }
  return be_->to_host(be_->embedding(token_embedding_, ids));
}

CLIPTextOutput CLIPTextModel::forward(const std::vector<int64_t>& ids, int64_t batch, int64_t seq_len,
                                      bool output_hidden_states, int clip_skip, float lora_scale) const {
  Backend& be = *be_;
  LoraScope lora(lora_.get(), lora_scale);
  const int64_t d = config_.hidden_size;
  if (batch < 1 || seq_len < 1 || int64_t(ids.size()) != batch * seq_len) {
    throw_error("E_INVALID_ARGUMENT", "inputIds: expected a non-empty [batch, seq_len] array of token ids");
  }
  if (seq_len > config_.max_position_embeddings) {
    throw_error("E_INVALID_ARGUMENT", "inputIds: sequences of " + std::to_string(seq_len) + " tokens exceed max_position_embeddings (" +
                                          std::to_string(config_.max_position_embeddings) + ")");
  }
  for (int64_t id : ids) {
    if (id < 0 || id >= config_.vocab_size) {
      throw_error("E_INVALID_ARGUMENT", "inputIds: token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                            std::to_string(config_.vocab_size) + ")");
    }
  }
  if (clip_skip > config_.num_hidden_layers) {
    throw_error("E_INVALID_ARGUMENT", "clipSkip: " + std::to_string(clip_skip) + " exceeds the number of layers (" +
                                          std::to_string(config_.num_hidden_layers) + ")");
  }

  // CLIPTextEmbeddings: inputs_embeds + position_embedding(arange(seq_len)).
  std::vector<int64_t> positions(static_cast<size_t>(seq_len));
  std::iota(positions.begin(), positions.end(), int64_t(0));
  Tensor h = be.binary(BinaryOp::Add, be.embedding(token_embedding_, ids).reshape({batch, seq_len, d}),
                       be.embedding(position_embedding_, positions));

  const bool keep = output_hidden_states || clip_skip >= 0;
  std::vector<Tensor> hidden;  // the encoder records its input and every layer's output
  h = encoder_(be, h, keep ? &hidden : nullptr);
  Tensor last = final_layer_norm_(be, h);

  // CLIPTextTransformer pooling: configs with the legacy eos_token_id == 2 take the argmax of the
  // ids (the EOS id is the largest in CLIP's vocabulary); others the first position of eos_token_id.
  std::vector<Tensor> pooled;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t* row = ids.data() + b * seq_len;
    int64_t pos = 0;
    if (config_.eos_token_id == 2) {
      for (int64_t s = 1; s < seq_len; ++s) {
        if (row[s] > row[pos]) pos = s;
      }
    } else {
      for (int64_t s = 0; s < seq_len; ++s) {
        if (row[s] == config_.eos_token_id) {
          pos = s;
          break;
        }
      }
    }
    pooled.push_back(be.contiguous(last.narrow(0, b, 1).narrow(1, pos, 1)).reshape({1, d}));
  }

  CLIPTextOutput out;
  out.pooler_output = be.to_host(be.cat(pooled, 0));
  if (clip_skip >= 0) {
    // encode_prompt: prompt_embeds[-1][-(clip_skip + 1)], then text_model.final_layer_norm.
    out.last_hidden_state = be.to_host(final_layer_norm_(be, hidden[hidden.size() - 1 - size_t(clip_skip)]));
  } else {
    out.last_hidden_state = be.to_host(last);
  }
  if (output_hidden_states) {
    for (const Tensor& t : hidden) out.hidden_states.push_back(be.to_host(t));
  }
  return out;
}

}  // namespace pia::nn
