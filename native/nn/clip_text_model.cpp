#include "clip_text_model.h"

#include <cmath>
#include <numeric>

#include "../core/errors.h"

namespace pia::nn {

namespace {

[[noreturn]] void bad_config(const std::string& key, const std::string& why) {
  throw_error("E_UNSUPPORTED", "text encoder config: '" + key + "' " + why, key);
}

int64_t positive_int(const JsonValue& j, const std::string& key, int64_t fallback) {
  const JsonValue* v = j.get(key);
  if (!v || v->kind == JsonValue::Kind::Null) return fallback;
  if (!v->is_uint() || v->uinteger == 0 || v->uinteger > (1ull << 31)) bad_config(key, "must be a positive integer");
  return int64_t(v->uinteger);
}

}  // namespace

CLIPTextConfig CLIPTextConfig::from_json(const JsonValue& root) {
  if (!root.is_object()) bad_config("<root>", "config.json must hold an object");
  const JsonValue* j = &root;
  // A CLIPModel config: CLIPTextConfig.from_pretrained reads its text_config.
  if (const JsonValue* mt = root.get("model_type"); mt && mt->is_string() && mt->string == "clip") {
    j = root.get("text_config");
    if (!j || !j->is_object()) bad_config("text_config", "is missing from a CLIPModel config");
  }
  CLIPTextConfig c;
  c.vocab_size = positive_int(*j, "vocab_size", c.vocab_size);
  c.hidden_size = positive_int(*j, "hidden_size", c.hidden_size);
  c.intermediate_size = positive_int(*j, "intermediate_size", c.intermediate_size);
  c.num_hidden_layers = positive_int(*j, "num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = positive_int(*j, "num_attention_heads", c.num_attention_heads);
  c.max_position_embeddings = positive_int(*j, "max_position_embeddings", c.max_position_embeddings);
  if (const JsonValue* v = j->get("hidden_act"); v && v->kind != JsonValue::Kind::Null) {
    if (!v->is_string()) bad_config("hidden_act", "must be a string");
    c.hidden_act = v->string;
  }
  if (const JsonValue* v = j->get("layer_norm_eps"); v && v->kind != JsonValue::Kind::Null) {
    if (v->kind != JsonValue::Kind::Number || !(v->number > 0) || !std::isfinite(v->number)) {
      bad_config("layer_norm_eps", "must be a positive number");
    }
    c.layer_norm_eps = v->number;
  }
  if (const JsonValue* v = j->get("eos_token_id"); v && v->kind != JsonValue::Kind::Null) {
    if (!v->is_uint()) bad_config("eos_token_id", "must be a non-negative integer");
    c.eos_token_id = int64_t(v->uinteger);
  }
  // CLIPAttention raises for this too.
  if (c.hidden_size % c.num_attention_heads != 0) {
    bad_config("num_attention_heads", "must divide hidden_size (" + std::to_string(c.hidden_size) + ")");
  }
  (void)c.activation();
  return c;
}

Activation CLIPTextConfig::activation() const {
  // transformers' ACT2FN names: gelu is the exact erf GELU; gelu_new and gelu_pytorch_tanh are
  // both the tanh approximation.
  if (hidden_act == "quick_gelu") return Activation::QuickGELU;
  if (hidden_act == "gelu") return Activation::GELU;
  if (hidden_act == "gelu_new" || hidden_act == "gelu_pytorch_tanh") return Activation::GELUTanh;
  bad_config("hidden_act", "= '" + hidden_act + "' is not supported (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh)");
}

CLIPTextModel::CLIPTextModel(const CLIPTextConfig& config, WeightStore& w, std::shared_ptr<Backend> backend)
    : config_(config), be_(std::move(backend)) {
  Backend& be = *be_;
  const int64_t d = config_.hidden_size, ff = config_.intermediate_size;
  const float eps = float(config_.layer_norm_eps);
  w.set_label("text_encoder");
  // A persistent buffer in older checkpoints; transformers recreates it as arange.
  w.ignore_key("text_model.embeddings.position_ids");
  token_embedding_ = be.upload(w.get("text_model.embeddings.token_embedding.weight", {config_.vocab_size, d}));
  position_embedding_ =
      be.upload(w.get("text_model.embeddings.position_embedding.weight", {config_.max_position_embeddings, d}));
  layers_.resize(size_t(config_.num_hidden_layers));
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::string p = "text_model.encoder.layers." + std::to_string(i);
    EncoderLayer& l = layers_[i];
    l.layer_norm1.load(w, be, p + ".layer_norm1", d, eps);
    l.q_proj.load(w, be, p + ".self_attn.q_proj", d, d);
    l.k_proj.load(w, be, p + ".self_attn.k_proj", d, d);
    l.v_proj.load(w, be, p + ".self_attn.v_proj", d, d);
    l.out_proj.load(w, be, p + ".self_attn.out_proj", d, d);
    l.layer_norm2.load(w, be, p + ".layer_norm2", d, eps);
    l.fc1.load(w, be, p + ".mlp.fc1", d, ff);
    l.fc2.load(w, be, p + ".mlp.fc2", ff, d);
  }
  final_layer_norm_.load(w, be, "text_model.final_layer_norm", d, eps);
  w.check_all_used();
}

CLIPTextOutput CLIPTextModel::forward(const std::vector<int64_t>& ids, int64_t batch, int64_t seq_len,
                                      bool output_hidden_states, int clip_skip) const {
  Backend& be = *be_;
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
  std::vector<Tensor> hidden;
  if (keep) hidden.push_back(h);
  AttentionParams attn;
  attn.heads = int(config_.num_attention_heads);
  attn.scale = float(std::pow(double(d / config_.num_attention_heads), -0.5));
  attn.causal = true;  // _create_4d_causal_attention_mask; diffusers passes no padding mask
  const Activation act = config_.activation();
  for (const EncoderLayer& l : layers_) {
    Tensor x = l.layer_norm1(be, h);
    Tensor a = be.attention(l.q_proj(be, x), l.k_proj(be, x), l.v_proj(be, x), attn);
    Tensor r = l.out_proj(be, a);
    be.add_(r, h);  // residual + attn_out (h itself may be kept in `hidden`, so never written)
    Tensor m = l.fc2(be, l.fc1(be, l.layer_norm2(be, r), act));
    be.add_(m, r);
    h = m;
    if (keep) hidden.push_back(h);
  }
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
