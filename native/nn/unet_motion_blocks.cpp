#include "unet_motion_blocks.h"

#include "../core/errors.h"

namespace pia::nn {

namespace {

ResnetBlock2DConfig resnet_config(const MotionBlockConfig& cfg, int64_t in, int64_t out) {
  ResnetBlock2DConfig r;
  r.in_channels = in;
  r.out_channels = out;
  r.temb_channels = cfg.temb_channels;
  r.groups = cfg.resnet_groups;
  r.eps = cfg.resnet_eps;
  r.non_linearity = cfg.resnet_act_fn;
  r.output_scale_factor = cfg.output_scale_factor;
  return r;
}

Transformer2DModelConfig attention_config(const MotionBlockConfig& cfg, int64_t channels, bool use_linear_projection) {
  Transformer2DModelConfig t;
  if (cfg.num_attention_heads <= 0 || channels % cfg.num_attention_heads != 0) {
    throw_error("E_UNSUPPORTED", std::to_string(channels) + " channels cannot be split into " +
                                     std::to_string(cfg.num_attention_heads) + " attention heads");
  }
  t.num_attention_heads = cfg.num_attention_heads;
  t.attention_head_dim = channels / cfg.num_attention_heads;
  t.in_channels = channels;
  t.cross_attention_dim = cfg.cross_attention_dim;
  t.norm_num_groups = cfg.resnet_groups;
  t.use_linear_projection = use_linear_projection;
  return t;
}

TransformerTemporalModelConfig motion_config(const MotionBlockConfig& cfg, int64_t channels, int norm_groups) {
  TransformerTemporalModelConfig m;
  if (cfg.temporal_num_attention_heads <= 0 || channels % cfg.temporal_num_attention_heads != 0) {
    throw_error("E_UNSUPPORTED", std::to_string(channels) + " channels cannot be split into " +
                                     std::to_string(cfg.temporal_num_attention_heads) + " motion attention heads");
  }
  m.num_attention_heads = cfg.temporal_num_attention_heads;
  m.attention_head_dim = channels / cfg.temporal_num_attention_heads;
  m.in_channels = channels;
  m.norm_num_groups = norm_groups;
  m.max_seq_length = cfg.temporal_max_seq_length;
  return m;
}

// diffusers apply_freeu: the first half of the backbone channels × b, the skip Fourier-filtered
// with threshold 1 and scale s, in the up blocks of resolution_idx 0 and 1 only.
void apply_freeu(Backend& be, int resolution_idx, Tensor& hidden, Tensor& res, const FreeUCall& freeu) {
  if (resolution_idx != 0 && resolution_idx != 1) return;
  const float s = resolution_idx == 0 ? freeu.params.s1 : freeu.params.s2;
  hidden = be.binary(BinaryOp::Mul, hidden, freeu.scale(resolution_idx, hidden.size(1)));
  res = be.fourier_filter(res, 1, s);
}

}  // namespace

Tensor freeu_scale_host(int64_t channels, float b) {
  const int64_t half = channels / 2;
  Tensor scale = Tensor::empty({1, channels, 1, 1});
  float* d = scale.data<float>();
  for (int64_t c = 0; c < channels; ++c) d[c] = c < half ? b : 1.f;  // × 1 leaves the other half bit-identical
  return scale;
}

const Tensor& FreeUCall::scale(int resolution_idx, int64_t channels) const {
  for (const FreeUScale& s : scales) {
    if (s.resolution_idx == resolution_idx && s.channels == channels) return s.scale;
  }
  throw_error("E_BACKEND", "FreeU: no backbone factor for resolution " + std::to_string(resolution_idx) + ", " +
                               std::to_string(channels) + " channels");
}

void check_cancel(Cancel cancel) {
  if (cancel && cancel->load(std::memory_order_relaxed)) throw_error("E_ABORTED", "unet: the call was cancelled");
}

void DownBlockMotion::load(WeightStore& unet, WeightStore& motion, Backend& be, const std::string& prefix,
                           const MotionBlockConfig& cfg) {
  has_cross_attention = cfg.has_cross_attention;
  resnets.resize(size_t(cfg.num_layers));
  motion_modules.resize(size_t(cfg.num_layers));
  if (has_cross_attention) attentions.resize(size_t(cfg.num_layers));
  for (int i = 0; i < cfg.num_layers; ++i) {
    const std::string idx = std::to_string(i);
    resnets[size_t(i)].load(unet, be, prefix + ".resnets." + idx,
                            resnet_config(cfg, i == 0 ? cfg.in_channels : cfg.out_channels, cfg.out_channels));
    if (has_cross_attention) {
      attentions[size_t(i)].load(unet, be, prefix + ".attentions." + idx,
                                 attention_config(cfg, cfg.out_channels, cfg.use_linear_projection));
    }
    motion_modules[size_t(i)].load(motion, be, prefix + ".motion_modules." + idx,
                                   motion_config(cfg, cfg.out_channels, cfg.resnet_groups));
  }
  has_downsampler = cfg.add_resample;
  if (has_downsampler) {
    downsampler.load(unet, be, prefix + ".downsamplers.0", cfg.out_channels, cfg.out_channels, cfg.downsample_padding);
  }
}

Tensor DownBlockMotion::operator()(Backend& be, const Tensor& x, const Tensor& temb, const Tensor& encoder_hidden_states,
                                   int64_t num_frames, std::vector<Tensor>& res_samples, Cancel cancel) const {
  Tensor h = x;
  for (size_t i = 0; i < resnets.size(); ++i) {
    check_cancel(cancel);
    h = resnets[i](be, h, temb);
    if (has_cross_attention) h = attentions[i](be, h, encoder_hidden_states);
    h = motion_modules[i](be, h, num_frames);
    res_samples.push_back(h);
  }
  if (has_downsampler) {
    h = downsampler(be, h);
    res_samples.push_back(h);
  }
  return h;
}

void UpBlockMotion::load(WeightStore& unet, WeightStore& motion, Backend& be, const std::string& prefix,
                         const MotionBlockConfig& cfg) {
  has_cross_attention = cfg.has_cross_attention;
  resolution_idx = cfg.resolution_idx;
  resnets.resize(size_t(cfg.num_layers));
  motion_modules.resize(size_t(cfg.num_layers));
  if (has_cross_attention) attentions.resize(size_t(cfg.num_layers));
  // diffusers quirk: get_up_block does not pass temporal_norm_num_groups to UpBlockMotion, whose
  // motion modules therefore always use its default of 32 groups; CrossAttnUpBlockMotion uses resnet_groups.
  const int motion_groups = has_cross_attention ? cfg.resnet_groups : cfg.temporal_norm_num_groups;
  for (int i = 0; i < cfg.num_layers; ++i) {
    const std::string idx = std::to_string(i);
    const int64_t res_skip = i == cfg.num_layers - 1 ? cfg.in_channels : cfg.out_channels;
    const int64_t resnet_in = i == 0 ? cfg.prev_output_channel : cfg.out_channels;
    hidden_channels.push_back(resnet_in);
    resnets[size_t(i)].load(unet, be, prefix + ".resnets." + idx, resnet_config(cfg, resnet_in + res_skip, cfg.out_channels));
    if (has_cross_attention) {
      attentions[size_t(i)].load(unet, be, prefix + ".attentions." + idx,
                                 attention_config(cfg, cfg.out_channels, cfg.use_linear_projection));
    }
    motion_modules[size_t(i)].load(motion, be, prefix + ".motion_modules." + idx,
                                   motion_config(cfg, cfg.out_channels, motion_groups));
  }
  has_upsampler = cfg.add_resample;
  if (has_upsampler) upsampler.load(unet, be, prefix + ".upsamplers.0", cfg.out_channels, cfg.out_channels);
}

Tensor UpBlockMotion::operator()(Backend& be, const Tensor& x, std::vector<Tensor>& res_samples, const Tensor& temb,
                                 const Tensor& encoder_hidden_states, int64_t num_frames, const FreeUCall& freeu,
                                 int64_t upsample_h, int64_t upsample_w, Cancel cancel) const {
  Tensor h = x;
  for (size_t i = 0; i < resnets.size(); ++i) {
    check_cancel(cancel);
    PIA_CHECK(!res_samples.empty(), "E_BACKEND", "UpBlockMotion: ran out of skip connections");
    Tensor res = res_samples.back();
    res_samples.pop_back();
    if (freeu.params.enabled()) apply_freeu(be, resolution_idx, h, res, freeu);
    h = be.cat({h, res}, 1);
    h = resnets[i](be, h, temb);
    if (has_cross_attention) h = attentions[i](be, h, encoder_hidden_states);
    h = motion_modules[i](be, h, num_frames);
  }
  if (has_upsampler) h = upsampler(be, h, upsample_h, upsample_w);
  return h;
}

void UNetMidBlockMotion::load(WeightStore& unet, WeightStore& motion, Backend& be, const std::string& prefix,
                              const MotionBlockConfig& cfg, bool with_motion_modules) {
  has_motion_modules = with_motion_modules;
  const int64_t C = cfg.in_channels;
  // diffusers builds both mid blocks without use_linear_projection (it defaults to False there).
  resnets.resize(size_t(cfg.num_layers + 1));
  attentions.resize(size_t(cfg.num_layers));
  resnets[0].load(unet, be, prefix + ".resnets.0", resnet_config(cfg, C, C));
  if (has_motion_modules) motion_modules.resize(size_t(cfg.num_layers));
  for (int i = 0; i < cfg.num_layers; ++i) {
    const std::string idx = std::to_string(i);
    attentions[size_t(i)].load(unet, be, prefix + ".attentions." + idx, attention_config(cfg, C, false));
    resnets[size_t(i) + 1].load(unet, be, prefix + ".resnets." + std::to_string(i + 1), resnet_config(cfg, C, C));
    if (has_motion_modules) {
      motion_modules[size_t(i)].load(motion, be, prefix + ".motion_modules." + idx, motion_config(cfg, C, cfg.resnet_groups));
    }
  }
}

Tensor UNetMidBlockMotion::operator()(Backend& be, const Tensor& x, const Tensor& temb,
                                      const Tensor& encoder_hidden_states, int64_t num_frames, Cancel cancel) const {
  Tensor h = resnets[0](be, x, temb);
  for (size_t i = 0; i < attentions.size(); ++i) {
    check_cancel(cancel);
    h = attentions[i](be, h, encoder_hidden_states);
    if (has_motion_modules) h = motion_modules[i](be, h, num_frames);
    h = resnets[i + 1](be, h, temb);
  }
  return h;
}

}  // namespace pia::nn
