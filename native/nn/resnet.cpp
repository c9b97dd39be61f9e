#include "resnet.h"

#include "../core/errors.h"

namespace pia::nn {

Activation activation_from_name(const std::string& act_fn) {
  std::string a;
  for (char c : act_fn) a += char(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (a == "swish" || a == "silu") return Activation::SiLU;
  if (a == "gelu") return Activation::GELU;
  throw_error("E_UNSUPPORTED", "activation function '" + act_fn + "' is not supported (silu/swish, gelu)");
}

void ResnetBlock2D::load(WeightStore& w, Backend& be, const std::string& prefix, const ResnetBlock2DConfig& cfg) {
  if (cfg.time_embedding_norm != "default") {
    throw_error("E_UNSUPPORTED", "ResnetBlock2D time_embedding_norm '" + cfg.time_embedding_norm +
                                     "' is not supported (only \"default\")");
  }
  const int64_t cin = cfg.in_channels;
  out_channels = cfg.out_channels ? cfg.out_channels : cin;
  const int64_t cout2 = cfg.conv_2d_out_channels ? cfg.conv_2d_out_channels : out_channels;
  const int groups_out = cfg.groups_out ? cfg.groups_out : cfg.groups;
  act = activation_from_name(cfg.non_linearity);
  skip_time_act = cfg.skip_time_act;
  output_scale_factor = cfg.output_scale_factor;

  norm1.load(w, be, prefix + ".norm1", cin, cfg.groups, cfg.eps);
  conv1.load(w, be, prefix + ".conv1", cin, out_channels, 3, Conv2dParams::same(1));
  has_time_emb_proj = cfg.temb_channels > 0;
  if (has_time_emb_proj) time_emb_proj.load(w, be, prefix + ".time_emb_proj", cfg.temb_channels, out_channels);
  norm2.load(w, be, prefix + ".norm2", out_channels, groups_out, cfg.eps);
  conv2.load(w, be, prefix + ".conv2", out_channels, cout2, 3, Conv2dParams::same(1));
  has_conv_shortcut = cfg.use_in_shortcut < 0 ? cin != cout2 : cfg.use_in_shortcut != 0;
  if (has_conv_shortcut) {
    conv_shortcut.load(w, be, prefix + ".conv_shortcut", cin, cout2, 1, Conv2dParams::same(0), cfg.conv_shortcut_bias);
  }
  out_channels = cout2;
}

Tensor ResnetBlock2D::operator()(Backend& be, const Tensor& x, const Tensor& temb) const {
  Tensor h = norm1(be, x, act);
  h = conv1(be, h);
  if (has_time_emb_proj) {
    PIA_CHECK(temb.defined(), "E_INVALID_ARGUMENT", "ResnetBlock2D: this block needs a time embedding");
    Tensor t = skip_time_act ? temb : be.activation(temb, act);
    t = time_emb_proj(be, t);
    h = be.binary(BinaryOp::Add, h, t.reshape({t.size(0), t.size(1), 1, 1}));
  }
  h = norm2(be, h, act);
  h = conv2(be, h);
  if (has_conv_shortcut) {
    Tensor s = conv_shortcut(be, x);
    be.add_(h, s);
  } else {
    be.add_(h, x);
  }
  // (input + h) / output_scale_factor; the reciprocal multiply differs by at most an ulp.
  if (output_scale_factor != 1.f) h = be.affine(h, 1.f / output_scale_factor);
  return h;
}

void Downsample2D::load(WeightStore& w, Backend& be, const std::string& prefix, int64_t channels, int64_t out_channels,
                        int padding, int kernel_size) {
  Conv2dParams p = Conv2dParams::same(padding, 2);
  if (padding == 0) p = Conv2dParams{2, 0, 1, 0, 1};  // F.pad(x, (0, 1, 0, 1)) in Downsample2D.forward
  conv.load(w, be, prefix + ".conv", channels, out_channels ? out_channels : channels, kernel_size, p);
}

void Upsample2D::load(WeightStore& w, Backend& be, const std::string& prefix, int64_t channels, int64_t out_channels,
                      int kernel_size, int padding) {
  conv.load(w, be, prefix + ".conv", channels, out_channels ? out_channels : channels, kernel_size,
            Conv2dParams::same(padding));
}

Tensor Upsample2D::operator()(Backend& be, const Tensor& x, int64_t out_h, int64_t out_w) const {
  const int64_t H = x.size(2), W = x.size(3);
  if (!out_h) out_h = 2 * H;
  if (!out_w) out_w = 2 * W;
  // The UNet asks for output_size only to match an odd skip connection: 2H-1 (or 2H). Nearest
  // interpolation to 2H-1 reads source row floor(d·H/(2H-1)), which equals floor(d/2) for every
  // d < 2H-1, so it is the ×2 upsampling with its last row/column dropped.
  if ((out_h != 2 * H && out_h != 2 * H - 1) || (out_w != 2 * W && out_w != 2 * W - 1)) {
    throw_error("E_UNSUPPORTED", "Upsample2D to " + std::to_string(out_h) + "x" + std::to_string(out_w) + " from " +
                                     shape_str(x.shape()) + " is not supported (only 2x, or 2x minus one)");
  }
  Tensor up = be.upsample_nearest2x(x);
  if (out_h != 2 * H || out_w != 2 * W) up = be.contiguous(up.narrow(2, 0, out_h).narrow(3, 0, out_w));
  return conv(be, up);
}

}  // namespace pia::nn
