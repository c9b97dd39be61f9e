#include "transformer_2d.h"

namespace pia::nn {

void load_conv1x1_as_linear(Linear& l, WeightStore& w, Backend& be, const std::string& prefix, int64_t in,
                            int64_t out) {
  l.in = in;
  l.out = out;
  Tensor host = w.get(prefix + ".weight", {out, in, 1, 1}).reshape({out, in});
  l.weight = be.upload(host);
  l.bias = be.upload(w.get(prefix + ".bias", {out}));
  l.lora_slot = lora_register({prefix, LoraTargetKind::Conv1x1AsLinear, in, out, 1, {}, true, host});
}

void Transformer2DModel::load(WeightStore& w, Backend& be, const std::string& prefix,
                              const Transformer2DModelConfig& cfg) {
  const int64_t inner = int64_t(cfg.num_attention_heads) * cfg.attention_head_dim;
  norm.load(w, be, prefix + ".norm", cfg.in_channels, cfg.norm_num_groups, 1e-6f);
  if (cfg.use_linear_projection) {
    proj_in.load(w, be, prefix + ".proj_in", cfg.in_channels, inner);
    proj_out.load(w, be, prefix + ".proj_out", inner, cfg.in_channels);
  } else {
    load_conv1x1_as_linear(proj_in, w, be, prefix + ".proj_in", cfg.in_channels, inner);
    load_conv1x1_as_linear(proj_out, w, be, prefix + ".proj_out", inner, cfg.in_channels);
  }
  BasicTransformerBlockConfig b;
  b.dim = inner;
  b.heads = cfg.num_attention_heads;
  b.head_dim = cfg.attention_head_dim;
  b.cross_attention_dim = cfg.cross_attention_dim;
  b.attention_bias = cfg.attention_bias;
  transformer_blocks.resize(size_t(cfg.num_layers));
  for (int i = 0; i < cfg.num_layers; ++i) {
    transformer_blocks[size_t(i)].load(w, be, prefix + ".transformer_blocks." + std::to_string(i), b);
  }
}

Tensor Transformer2DModel::operator()(Backend& be, const Tensor& x, const Tensor& encoder_hidden_states) const {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  Tensor h = norm(be, x);
  h = be.contiguous(h.reshape({N, C, H * W}).permute({0, 2, 1}));
  h = proj_in(be, h);
  for (const auto& blk : transformer_blocks) h = blk(be, h, encoder_hidden_states);
  h = proj_out(be, h);
  h = be.contiguous(h.permute({0, 2, 1})).reshape({N, C, H, W});
  be.add_(h, x);
  return h;
}

}  // namespace pia::nn
