#include "attention.h"

#include <algorithm>
#include <vector>

#include "../core/errors.h"
#include "ip_adapter.h"

namespace pia::nn {

void FeedForward::load(WeightStore& w, Backend& be, const std::string& prefix, int64_t dim,
                       const std::string& activation_fn, int64_t inner_dim) {
  if (activation_fn != "geglu") {
    throw_error("E_UNSUPPORTED", "FeedForward activation_fn '" + activation_fn + "' is not supported (only geglu)");
  }
  const int64_t inner = inner_dim ? inner_dim : dim * 4;
  proj.load(w, be, prefix + ".net.0.proj", dim, inner * 2);
  out.load(w, be, prefix + ".net.2", inner, dim);
}

Tensor FeedForward::operator()(Backend& be, const Tensor& x) const {
  const int64_t dim = x.size(-1), rows = x.numel() / dim;
  const int64_t row_bytes = proj.out * int64_t(sizeof(float));
  const int64_t chunk = std::max<int64_t>(1, chunk_bytes / row_bytes);
  if (rows <= chunk || !x.is_contiguous()) return out(be, be.geglu(proj(be, x)));
  Tensor flat = x.reshape({rows, dim});
  std::vector<Tensor> parts;
  for (int64_t r = 0; r < rows; r += chunk) {
    Tensor part = flat.narrow(0, r, std::min(chunk, rows - r));
    parts.push_back(out(be, be.geglu(proj(be, part))));
  }
  Shape shape = x.shape();
  shape.back() = out.out;
  return be.cat(parts, 0).reshape(shape);
}

void BasicTransformerBlock::load(WeightStore& w, Backend& be, const std::string& prefix,
                                 const BasicTransformerBlockConfig& cfg) {
  has_pos_embed = cfg.num_positional_embeddings > 0;
  if (has_pos_embed) pos_embed.load(w, be, prefix + ".pos_embed", cfg.dim, cfg.num_positional_embeddings);
  norm1.load(w, be, prefix + ".norm1", cfg.dim, cfg.norm_eps);
  AttentionConfig a;
  a.query_dim = cfg.dim;
  a.heads = cfg.heads;
  a.dim_head = cfg.head_dim;
  a.bias = cfg.attention_bias;
  attn1.load(w, be, prefix + ".attn1", a);
  has_attn2 = cfg.cross_attention_dim > 0 || cfg.double_self_attention;
  if (has_attn2) {
    norm2.load(w, be, prefix + ".norm2", cfg.dim, cfg.norm_eps);
    attn2_is_cross = !cfg.double_self_attention;
    a.cross_attention_dim = attn2_is_cross ? cfg.cross_attention_dim : 0;
    attn2.load(w, be, prefix + ".attn2", a);
    if (attn2_is_cross) ip_slot = ip_register({prefix + ".attn2", cfg.dim, cfg.cross_attention_dim});
  }
  norm3.load(w, be, prefix + ".norm3", cfg.dim, cfg.norm_eps);
  ff.load(w, be, prefix + ".ff", cfg.dim, cfg.activation_fn);
}

Tensor BasicTransformerBlock::operator()(Backend& be, const Tensor& x, const Tensor& encoder_hidden_states,
                                         int64_t frames) const {
  PIA_CHECK(frames <= 0 || !attn2_is_cross, "E_INVALID_ARGUMENT",
            "BasicTransformerBlock: the frame-major layout has no cross-attention");
  // diffusers adds the sinusoidal positions to the *normed* hidden states before each attention.
  Tensor n = has_pos_embed ? pos_embed.after_norm(be, norm1, x, frames) : norm1(be, x);
  Tensor h = attn1(be, n, Tensor(), frames);
  be.add_(h, x);
  if (has_attn2) {
    n = has_pos_embed ? pos_embed.after_norm(be, norm2, h, frames) : norm2(be, h);
    // attn2 is self-attention (double_self_attention) or cross-attention on encoder_hidden_states;
    // diffusers passes encoder_hidden_states, which is None inside the motion modules.
    // With an IP-Adapter call active, the cross-attention is IPAdapterAttnProcessor's; scale 0
    // skips the image branch (text + 0·ip is the text attention bit for bit).
    const IpCall* ip = ip_slot >= 0 ? ip_active() : nullptr;
    Tensor a = ip && ip->scale != 0.f ? ip_adapter_attention(be, attn2, ip_slot, n, encoder_hidden_states, *ip)
                                      : attn2(be, n, attn2_is_cross ? encoder_hidden_states : Tensor(), frames);
    be.add_(a, h);
    h = a;
  }
  Tensor f = ff(be, norm3(be, h));
  be.add_(f, h);
  return f;
}

}  // namespace pia::nn
