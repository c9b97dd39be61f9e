#include "clip_vision_model.h"

#include <cmath>
#include <numeric>

#include "../core/errors.h"

namespace pia::nn {

CLIPVisionConfig CLIPVisionConfig::from_json(const JsonValue& root) {
  CLIPVisionConfig c;
  if (!root.is_object()) c.bad_config("<root>", "config.json must hold an object");
  const JsonValue* j = &root;
  if (const JsonValue* mt = root.get("model_type"); mt && mt->is_string() && mt->string == "clip") {
    // CLIPVisionConfig.from_pretrained on a CLIPModel config: its vision_config, whose
    // projection_dim the top level's overrides only if the vision config lacks one.
    j = root.get("vision_config");
    if (!j || !j->is_object()) c.bad_config("vision_config", "is missing from a CLIPModel config");
    c.projection_dim = c.positive_int(root, "projection_dim", c.projection_dim);
  }
  c.projection_dim = c.positive_int(*j, "projection_dim", c.projection_dim);
  c.num_channels = c.positive_int(*j, "num_channels", c.num_channels);
  c.image_size = c.positive_int(*j, "image_size", c.image_size);
  c.patch_size = c.positive_int(*j, "patch_size", c.patch_size);
  c.read_encoder_fields(*j);
  if (c.image_size % c.patch_size != 0) {
    c.bad_config("patch_size", "must divide image_size (" + std::to_string(c.image_size) + ")");
  }
  return c;
}

CLIPVisionModelWithProjection::CLIPVisionModelWithProjection(const CLIPVisionConfig& config, WeightStore& w,
                                                             std::shared_ptr<Backend> backend)
    : config_(config), be_(std::move(backend)) {
  Backend& be = *be_;
  const auto& c = config_;
  const int64_t d = c.hidden_size;
  const float eps = float(c.layer_norm_eps);
  w.set_label("image_encoder");
  // A persistent buffer in older checkpoints; transformers recreates it as arange.
  w.ignore_key("vision_model.embeddings.position_ids");
  patch_embedding_.load(w, be, "vision_model.embeddings.patch_embedding", c.num_channels, d, c.patch_size,
                        Conv2dParams{int(c.patch_size), 0, 0, 0, 0}, /*has_bias=*/false);
  class_embedding_ =
      be.from_host(w.get("vision_model.embeddings.class_embedding", {d}).to(DType::F32).contiguous().reshape({1, 1, d}));
  position_embedding_ = be.upload(w.get("vision_model.embeddings.position_embedding.weight", {c.num_positions(), d}));
  pre_layrnorm_.load(w, be, "vision_model.pre_layrnorm", d, eps);
  encoder_.load(w, be, "vision_model.encoder", c.num_hidden_layers, d, c.intermediate_size, c.num_attention_heads, eps,
                c.activation(), /*causal=*/false);
  post_layernorm_.load(w, be, "vision_model.post_layernorm", d, eps);
  visual_projection_.load(w, be, "visual_projection", d, c.projection_dim, /*has_bias=*/false);
  w.check_all_used();
}

CLIPVisionOutput CLIPVisionModelWithProjection::forward(const Tensor& pixel_values, bool output_hidden_states) const {
  Backend& be = *be_;
  const auto& c = config_;
  PIA_CHECK(pixel_values.dim() == 4 && pixel_values.size(0) > 0 && pixel_values.size(1) == c.num_channels &&
                pixel_values.size(2) == c.image_size && pixel_values.size(3) == c.image_size,
            "E_INVALID_ARGUMENT",
            "image encoder: pixel_values must be [B, " + std::to_string(c.num_channels) + ", " +
                std::to_string(c.image_size) + ", " + std::to_string(c.image_size) + "], got " +
                shape_str(pixel_values.shape()));
  const int64_t B = pixel_values.size(0), d = c.hidden_size, S = c.num_positions();

  // CLIPVisionEmbeddings: conv -> flatten(2).transpose(1, 2) (patches row-major), class token first,
  // + position_embedding(arange(S)).
  Tensor p = patch_embedding_(be, be.from_host(pixel_values.contiguous()));
  p = be.contiguous(p.reshape({B, d, S - 1}).permute({0, 2, 1}));
  std::vector<Tensor> parts;
  for (int64_t b = 0; b < B; ++b) {
    parts.push_back(class_embedding_);
    parts.push_back(p.narrow(0, b, 1));
  }
  Tensor x = be.cat(parts, 1);  // [1, B·S, d] ...
  x = x.reshape({B, S, d});     // ... is the B sequences one after another
  std::vector<int64_t> positions(static_cast<size_t>(S));
  std::iota(positions.begin(), positions.end(), int64_t(0));
  x = be.binary(BinaryOp::Add, x, be.embedding(position_embedding_, positions));
  Tensor h0 = pre_layrnorm_(be, x);

  std::vector<Tensor> hidden;
  Tensor last = encoder_(be, h0, output_hidden_states ? &hidden : nullptr);
  // CLIPVisionTransformer: pooled_output = post_layernorm(last_hidden_state[:, 0, :]).
  Tensor cls = be.contiguous(last.narrow(1, 0, 1)).reshape({B, d});
  CLIPVisionOutput out;
  out.image_embeds = be.to_host(visual_projection_(be, post_layernorm_(be, cls)));
  out.last_hidden_state = be.to_host(last);
  for (const Tensor& t : hidden) out.hidden_states.push_back(be.to_host(t));
  return out;
}

}  // namespace pia::nn
