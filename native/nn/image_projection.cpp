#include "image_projection.h"

#include "../core/errors.h"

namespace pia::nn {

namespace {

int64_t dim_of(WeightStore& w, const std::string& key, size_t rank, size_t i) {
  if (!w.has(key)) throw_error("E_WEIGHTS_MISMATCH", "IP-Adapter image projection: missing key '" + key + "'", key);
  const Shape s = w.shape_of(key);
  if (s.size() != rank) {
    throw_error("E_WEIGHTS_MISMATCH", "IP-Adapter image projection: '" + key + "' has shape " + shape_str(s), key);
  }
  return s[i];
}

}  // namespace

ImageProjection::ImageProjection(WeightStore& w, Backend& be, const std::string& p, int64_t num_image_text_embeds)
    : num_tokens_(num_image_text_embeds) {
  // _convert_ip_adapter_image_proj_to_diffusers: cross_attention_dim = proj.weight.shape[0] // 4.
  const int64_t out = dim_of(w, p + "image_embeds.weight", 2, 0), in = dim_of(w, p + "image_embeds.weight", 2, 1);
  cross_ = out / num_tokens_;
  PIA_CHECK(cross_ > 0 && cross_ * num_tokens_ == out, "E_WEIGHTS_MISMATCH",
            "IP-Adapter image projection: proj.weight rows (" + std::to_string(out) + ") are not " +
                std::to_string(num_tokens_) + " tokens");
  image_embeds_.load(w, be, p + "image_embeds", in, out);
  norm_.load(w, be, p + "norm", cross_, 1e-5f);
}

Tensor ImageProjection::operator()(Backend& be, const Tensor& x) const {
  const int64_t B = x.size(0);
  return norm_(be, image_embeds_(be, x).reshape({B, num_tokens_, cross_}));
}

IPAdapterPlusImageProjection::IPAdapterPlusImageProjection(WeightStore& w, Backend& be, const std::string& p,
                                                           int64_t num_positions)
    : num_positions_(num_positions) {
  const int64_t queries = dim_of(w, p + "latents", 3, 1), hidden = dim_of(w, p + "latents", 3, 2);
  const int64_t embed = dim_of(w, p + "proj_in.weight", 2, 1), output = dim_of(w, p + "proj_out.weight", 2, 0);
  // heads = to_q.weight.shape[0] // 64 (the converter's hard-coded dim_head).
  const int64_t dim_head = 64, heads = dim_of(w, p + "layers.0.2.to_q.weight", 2, 0) / dim_head;
  PIA_CHECK(heads > 0, "E_WEIGHTS_MISMATCH", "IP-Adapter plus: layers.0.0.to_q has fewer than 64 rows");
  latents_ = be.from_host(w.get(p + "latents", {1, queries, hidden}).to(DType::F32).contiguous());
  proj_in_.load(w, be, p + "proj_in", embed, hidden);
  proj_out_.load(w, be, p + "proj_out", hidden, output);
  norm_out_.load(w, be, p + "norm_out", output, 1e-5f);
  layers_.resize(4);  // IPAdapterPlusImageProjection(depth=4): the converter does not read it from the file
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::string l = p + "layers." + std::to_string(i);
    Layer& L = layers_[i];
    L.ln0.load(w, be, l + ".0", hidden, 1e-5f);
    L.ln1.load(w, be, l + ".1", hidden, 1e-5f);
    AttentionConfig a;
    a.query_dim = hidden;
    a.heads = int(heads);
    a.dim_head = dim_head;
    a.bias = false;
    a.out_bias = false;
    L.attn.load(w, be, l + ".2", a);
    L.ff_norm.load(w, be, l + ".3.0", hidden, 1e-5f);
    // FeedForward(hidden, hidden, activation_fn="gelu", mult=4, bias=False): GELU(approximate="none").
    L.ff_in.load(w, be, l + ".3.1.net.0.proj", hidden, hidden * 4, false);
    L.ff_out.load(w, be, l + ".3.1.net.2", hidden * 4, hidden, false);
  }
}

Tensor IPAdapterPlusImageProjection::operator()(Backend& be, const Tensor& x_in) const {
  const int64_t B = x_in.size(0);
  std::vector<Tensor> rows(size_t(B), latents_);
  Tensor lat = be.cat(rows, 0);  // latents.repeat(B, 1, 1)
  Tensor x = proj_in_(be, x_in);
  for (const Layer& L : layers_) {
    // The query is LN1(latents) but the residual the un-normalised latents; keys/values are
    // cat([LN0(x), LN1(latents)], dim=-2): image features first.
    Tensor n = L.ln1(be, lat);
    Tensor kv = be.cat({L.ln0(be, x), n}, 1);
    Tensor a = L.attn.attend(be, n, kv);
    be.add_(a, lat);
    Tensor f = L.ff_out(be, L.ff_in(be, L.ff_norm(be, a), Activation::GELU));
    be.add_(f, a);
    lat = f;
  }
  return norm_out_(be, proj_out_(be, lat));
}

}  // namespace pia::nn
