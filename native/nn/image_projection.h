#pragma once
// The IP-Adapter image projections of diffusers v0.26.3 (models/embeddings.py): they turn the image
// encoder's output into the image tokens the UNet's IP cross-attention reads. Weights by the diffusers
// names _convert_ip_adapter_image_proj_to_diffusers gives the original h94 keys (lib/loaders/ip_adapter.ts
// converts them): `image_embeds.*`, `norm.*` (ImageProjection); `latents`, `proj_in.*`, `proj_out.*`,
// `norm_out.*`, `layers.i.{0,1,2.to_q,2.to_k,2.to_v,2.to_out.0,3.0,3.1.net.0.proj,3.1.net.2}.*` (plus).
#include <memory>
#include <string>
#include <vector>

#include "attention_processor.h"
#include "layers.h"

namespace pia::nn {

class ImageProjectionBase {
 public:
  virtual ~ImageProjectionBase() = default;
  // image_embeds on the device -> [B, num_tokens, cross_attention_dim].
  virtual Tensor operator()(Backend& be, const Tensor& image_embeds) const = 0;
  // The shape one image's embeds must have: {D} (base) or {S, D} (plus).
  virtual Shape embeds_shape() const = 0;
  virtual int64_t num_tokens() const = 0;
  virtual int64_t cross_attention_dim() const = 0;
};

// ImageProjection: LayerNorm(Linear(x).reshape(B, num_tokens, cross_attention_dim)), per token.
class ImageProjection : public ImageProjectionBase {
 public:
  // Sizes from the weights, as the converter infers them: image_embeds.weight [T·cross, D], norm [cross].
  ImageProjection(WeightStore& w, Backend& be, const std::string& prefix, int64_t num_image_text_embeds);
  Tensor operator()(Backend& be, const Tensor& image_embeds) const override;
  Shape embeds_shape() const override { return {image_embeds_.in}; }
  int64_t num_tokens() const override { return num_tokens_; }
  int64_t cross_attention_dim() const override { return cross_; }

 private:
  Linear image_embeds_;
  LayerNorm norm_;
  int64_t num_tokens_ = 4, cross_ = 0;
};

// IPAdapterPlusImageProjection (the IP-Adapter "plus" Resampler): learned latent queries attend to
// [LN0(proj_in(x)), LN1(latents)] in `depth` perceiver layers with a GELU feed-forward, then
// norm_out(proj_out(latents)). diffusers fixes depth 4, dim_head 64 and ffn_ratio 4.
class IPAdapterPlusImageProjection : public ImageProjectionBase {
 public:
  IPAdapterPlusImageProjection(WeightStore& w, Backend& be, const std::string& prefix, int64_t num_positions);
  Tensor operator()(Backend& be, const Tensor& image_embeds) const override;
  Shape embeds_shape() const override { return {num_positions_, proj_in_.in}; }
  int64_t num_tokens() const override { return latents_.size(1); }
  int64_t cross_attention_dim() const override { return proj_out_.out; }

 private:
  struct Layer {
    LayerNorm ln0, ln1, ff_norm;
    Attention attn;
    Linear ff_in, ff_out;
  };
  Tensor latents_;  // [1, num_queries, hidden] float32 on the device
  Linear proj_in_, proj_out_;
  LayerNorm norm_out_;
  std::vector<Layer> layers_;
  int64_t num_positions_ = 0;
};

}  // namespace pia::nn
