#include "autoencoder_kl.h"

#include <algorithm>
#include <cmath>

#include "../core/errors.h"

namespace pia::nn {

namespace {

[[noreturn]] void bad_config(const std::string& key, const std::string& why) {
  throw_error("E_UNSUPPORTED", "vae config: '" + key + "' " + why, key);
}

const JsonValue* field(const JsonValue& j, const std::string& key) {
  const JsonValue* v = j.get(key);
  return v && v->kind != JsonValue::Kind::Null ? v : nullptr;
}

int64_t positive_int(const JsonValue& v, const std::string& key) {
  if (!v.is_uint() || v.uinteger == 0 || v.uinteger > (1ull << 31)) bad_config(key, "must be a positive integer");
  return int64_t(v.uinteger);
}

int64_t int_field(const JsonValue& j, const std::string& key, int64_t fallback) {
  const JsonValue* v = field(j, key);
  return v ? positive_int(*v, key) : fallback;
}

bool bool_field(const JsonValue& j, const std::string& key, bool fallback) {
  const JsonValue* v = field(j, key);
  if (!v) return fallback;
  if (v->kind == JsonValue::Kind::Bool) return v->boolean;
  if (v->kind == JsonValue::Kind::Number) return v->number != 0;  // `force_upcast: float = True`
  bad_config(key, "must be a boolean");
}

std::vector<std::string> strings_field(const JsonValue& j, const std::string& key, std::vector<std::string> fallback) {
  const JsonValue* v = field(j, key);
  if (!v) return fallback;
  if (!v->is_array() || v->array.empty()) bad_config(key, "must be a non-empty list of strings");
  std::vector<std::string> out;
  for (const JsonValue& e : v->array) {
    if (!e.is_string()) bad_config(key, "must be a non-empty list of strings");
    out.push_back(e.string);
  }
  return out;
}

std::vector<int64_t> ints_field(const JsonValue& j, const std::string& key, std::vector<int64_t> fallback) {
  const JsonValue* v = field(j, key);
  if (!v) return fallback;
  if (!v->is_array() || v->array.empty()) bad_config(key, "must be a non-empty list of positive integers");
  std::vector<int64_t> out;
  for (const JsonValue& e : v->array) out.push_back(positive_int(e, key));
  return out;
}

}  // namespace

AutoencoderKLConfig AutoencoderKLConfig::from_json(const JsonValue& j) {
  if (!j.is_object()) bad_config("<root>", "config.json must hold an object");
  AutoencoderKLConfig c;
  if (const JsonValue* v = field(j, "_class_name"); v && (!v->is_string() || v->string != "AutoencoderKL")) {
    bad_config("_class_name", "is '" + (v->is_string() ? v->string : std::string("?")) + "', not AutoencoderKL");
  }
  c.in_channels = int_field(j, "in_channels", c.in_channels);
  c.out_channels = int_field(j, "out_channels", c.out_channels);
  c.down_block_types = strings_field(j, "down_block_types", c.down_block_types);
  c.up_block_types = strings_field(j, "up_block_types", c.up_block_types);
  c.block_out_channels = ints_field(j, "block_out_channels", c.block_out_channels);
  c.layers_per_block = int_field(j, "layers_per_block", c.layers_per_block);
  if (const JsonValue* v = field(j, "act_fn")) {
    if (!v->is_string()) bad_config("act_fn", "must be a string");
    c.act_fn = v->string;
  }
  (void)activation_from_name(c.act_fn);  // E_UNSUPPORTED for what get_activation knows and we do not
  c.latent_channels = int_field(j, "latent_channels", c.latent_channels);
  c.norm_num_groups = int(int_field(j, "norm_num_groups", c.norm_num_groups));
  if (const JsonValue* v = field(j, "sample_size")) {
    if (v->is_array()) {
      if (v->array.empty()) bad_config("sample_size", "must be a positive integer or a list of them");
      c.sample_size = positive_int(v->array[0], "sample_size");
      for (const JsonValue& e : v->array) (void)positive_int(e, "sample_size");
      c.sample_size_is_list = true;
    } else {
      c.sample_size = positive_int(*v, "sample_size");
    }
  }
  if (const JsonValue* v = field(j, "scaling_factor")) {
    if (v->kind != JsonValue::Kind::Number || !std::isfinite(v->number) || v->number == 0) {
      bad_config("scaling_factor", "must be a non-zero number");
    }
    c.scaling_factor = v->number;
  }
  c.force_upcast = bool_field(j, "force_upcast", c.force_upcast);
  c.mid_block_add_attention = bool_field(j, "mid_block_add_attention", c.mid_block_add_attention);
  c.use_quant_conv = bool_field(j, "use_quant_conv", c.use_quant_conv);
  c.use_post_quant_conv = bool_field(j, "use_post_quant_conv", c.use_post_quant_conv);

  const size_t n = c.block_out_channels.size();
  if (c.down_block_types.size() != n || c.up_block_types.size() != n) {
    bad_config("block_out_channels", "needs one entry per down and up block (" + std::to_string(n) + " vs " +
                                         std::to_string(c.down_block_types.size()) + " down, " +
                                         std::to_string(c.up_block_types.size()) + " up)");
  }
  if (n > 16) bad_config("block_out_channels", "has too many blocks");
  for (const auto& t : c.down_block_types) {
    if (t != "DownEncoderBlock2D") bad_config("down_block_types", "entry '" + t + "' is not supported (DownEncoderBlock2D)");
  }
  for (const auto& t : c.up_block_types) {
    if (t != "UpDecoderBlock2D") bad_config("up_block_types", "entry '" + t + "' is not supported (UpDecoderBlock2D)");
  }
  for (int64_t ch : c.block_out_channels) {
    if (ch % c.norm_num_groups != 0) {
      bad_config("norm_num_groups", "(" + std::to_string(c.norm_num_groups) + ") must divide every block_out_channels entry");
    }
  }
  return c;
}

static void check_cancel(const std::atomic<bool>* cancel) {
  if (cancel && cancel->load(std::memory_order_relaxed)) throw_error("E_ABORTED", "vae: the call was cancelled");
}

int64_t AutoencoderKL::tile_latent_min_size() const {
  // int(sample_size / (2 ** (len(block_out_channels) - 1)))
  return int64_t(double(config_.sample_size) / double(config_.scale_factor()));
}

// --- loading ---------------------------------------------------------------------------------------

void AutoencoderKL::MidBlock::load(WeightStore& w, Backend& be, const std::string& prefix, const AutoencoderKLConfig& c,
                                   int64_t channels) {
  // Encoder/Decoder build UNetMidBlock2D(resnet_eps=1e-6, output_scale_factor=1,
  // attention_head_dim=channels, temb_channels=None): one head spanning all channels.
  ResnetBlock2DConfig r;
  r.in_channels = channels;
  r.out_channels = channels;
  r.groups = c.norm_num_groups;
  r.eps = 1e-6f;
  r.non_linearity = c.act_fn;
  resnet0.load(w, be, prefix + ".resnets.0", r);
  has_attention = c.mid_block_add_attention;
  if (has_attention) {
    AttentionConfig a;
    a.query_dim = channels;
    a.heads = 1;
    a.dim_head = channels;
    a.bias = true;
    a.norm_num_groups = c.norm_num_groups;
    a.eps = 1e-6f;
    a.residual_connection = true;
    a.rescale_output_factor = 1.f;
    attention.load(w, be, prefix + ".attentions.0", a);
  }
  resnet1.load(w, be, prefix + ".resnets.1", r);
}

Tensor AutoencoderKL::MidBlock::operator()(Backend& be, const Tensor& x) const {
  Tensor h = resnet0(be, x);
  if (has_attention) h = attention(be, h);
  return resnet1(be, h);
}

AutoencoderKL::AutoencoderKL(const AutoencoderKLConfig& config, WeightStore& w, std::shared_ptr<Backend> backend)
    : config_(config), be_(std::move(backend)) {
  Backend& be = *be_;
  const AutoencoderKLConfig& c = config_;
  const auto& boc = c.block_out_channels;
  const size_t n = boc.size();
  w.set_label("vae");
  // Checkpoints saved before diffusers renamed the VAE attention (query/key/value/proj_attn):
  // diffusers' _convert_deprecated_attention_blocks maps them at load time, and so do we.
  for (const char* part : {"encoder", "decoder"}) {
    const std::string p = std::string(part) + ".mid_block.attentions.0.";
    const std::pair<const char*, const char*> renames[] = {
        {"query", "to_q"}, {"key", "to_k"}, {"value", "to_v"}, {"proj_attn", "to_out.0"}};
    for (const auto& rn : renames) {
      for (const char* suffix : {".weight", ".bias"}) {
        const std::string old_key = p + rn.first + suffix, new_key = p + rn.second + suffix;
        if (w.has(old_key) && !w.has(new_key)) {
          w.put(new_key, w.get(old_key));
        }
      }
    }
  }

  ResnetBlock2DConfig rc;
  rc.groups = c.norm_num_groups;
  rc.eps = 1e-6f;
  rc.non_linearity = c.act_fn;

  // Encoder
  enc_conv_in_.load(w, be, "encoder.conv_in", c.in_channels, boc[0], 3, Conv2dParams::same(1));
  int64_t out_ch = boc[0];
  down_blocks_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t in_ch = out_ch;
    out_ch = boc[i];
    const std::string p = "encoder.down_blocks." + std::to_string(i);
    Block& b = down_blocks_[i];
    for (int64_t l = 0; l < c.layers_per_block; ++l) {
      ResnetBlock2DConfig r = rc;
      r.in_channels = l == 0 ? in_ch : out_ch;
      r.out_channels = out_ch;
      b.resnets.emplace_back();
      b.resnets.back().load(w, be, p + ".resnets." + std::to_string(l), r);
    }
    b.has_downsample = i + 1 != n;
    if (b.has_downsample) b.downsample.load(w, be, p + ".downsamplers.0", out_ch, out_ch, /*padding=*/0);
  }
  enc_mid_.load(w, be, "encoder.mid_block", c, boc[n - 1]);
  enc_norm_out_.load(w, be, "encoder.conv_norm_out", boc[n - 1], c.norm_num_groups, 1e-6f);
  enc_conv_out_.load(w, be, "encoder.conv_out", boc[n - 1], 2 * c.latent_channels, 3, Conv2dParams::same(1));
  if (c.use_quant_conv) {
    quant_conv_.load(w, be, "quant_conv", 2 * c.latent_channels, 2 * c.latent_channels, 1, Conv2dParams::same(0));
  }
  if (c.use_post_quant_conv) {
    post_quant_conv_.load(w, be, "post_quant_conv", c.latent_channels, c.latent_channels, 1, Conv2dParams::same(0));
  }

  // Decoder
  dec_conv_in_.load(w, be, "decoder.conv_in", c.latent_channels, boc[n - 1], 3, Conv2dParams::same(1));
  dec_mid_.load(w, be, "decoder.mid_block", c, boc[n - 1]);
  out_ch = boc[n - 1];
  up_blocks_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t prev_ch = out_ch;
    out_ch = boc[n - 1 - i];
    const std::string p = "decoder.up_blocks." + std::to_string(i);
    Block& b = up_blocks_[i];
    for (int64_t l = 0; l < c.layers_per_block + 1; ++l) {
      ResnetBlock2DConfig r = rc;
      r.in_channels = l == 0 ? prev_ch : out_ch;
      r.out_channels = out_ch;
      b.resnets.emplace_back();
      b.resnets.back().load(w, be, p + ".resnets." + std::to_string(l), r);
    }
    b.has_upsample = i + 1 != n;
    if (b.has_upsample) b.upsample.load(w, be, p + ".upsamplers.0", out_ch, out_ch);
  }
  dec_norm_out_.load(w, be, "decoder.conv_norm_out", boc[0], c.norm_num_groups, 1e-6f);
  dec_conv_out_.load(w, be, "decoder.conv_out", boc[0], c.out_channels, 3, Conv2dParams::same(1));
  w.check_all_used();
}

// --- networks --------------------------------------------------------------------------------------

Tensor AutoencoderKL::encoder(const Tensor& x, Cancel cancel) const {
  Backend& be = *be_;
  Tensor h = enc_conv_in_(be, x);
  for (const Block& b : down_blocks_) {
    for (const ResnetBlock2D& r : b.resnets) {
      check_cancel(cancel);
      h = r(be, h);
    }
    if (b.has_downsample) h = b.downsample(be, h);
  }
  check_cancel(cancel);
  h = enc_mid_(be, h);
  h = enc_norm_out_(be, h, Activation::SiLU);  // conv_norm_out, conv_act (always SiLU in vae.Encoder)
  return enc_conv_out_(be, h);
}

Tensor AutoencoderKL::decoder(const Tensor& z, Cancel cancel) const {
  Backend& be = *be_;
  check_cancel(cancel);
  Tensor h = dec_conv_in_(be, z);
  h = dec_mid_(be, h);
  for (const Block& b : up_blocks_) {
    for (const ResnetBlock2D& r : b.resnets) {
      check_cancel(cancel);
      h = r(be, h);
    }
    if (b.has_upsample) h = b.upsample(be, h);
  }
  check_cancel(cancel);
  h = dec_norm_out_(be, h, Activation::SiLU);
  return dec_conv_out_(be, h);
}

// --- tiling (AutoencoderKL.blend_v / blend_h / tiled_encode / tiled_decode) -------------------------

// b[:, :, y, :] = a[:, :, -e + y, :] * (1 - y / e) + b[:, :, y, :] * (y / e) for y < e, computed like
// torch: each weight is a Python float rounded to float32, two products, one sum.
Tensor AutoencoderKL::blend_v(const Tensor& a, const Tensor& b, int64_t extent) const {
  Backend& be = *be_;
  const int64_t e = std::min({a.size(2), b.size(2), extent});
  if (e <= 0) return b;
  Tensor wa = Tensor::empty({e, 1}), wb = Tensor::empty({e, 1});
  for (int64_t y = 0; y < e; ++y) {
    wa.data<float>()[y] = float(1.0 - double(y) / double(e));
    wb.data<float>()[y] = float(double(y) / double(e));
  }
  Tensor top = be.binary(BinaryOp::Add,
                         be.binary(BinaryOp::Mul, be.contiguous(a.narrow(2, a.size(2) - e, e)), be.from_host(wa)),
                         be.binary(BinaryOp::Mul, be.contiguous(b.narrow(2, 0, e)), be.from_host(wb)));
  if (e == b.size(2)) return top;
  return be.cat({top, be.contiguous(b.narrow(2, e, b.size(2) - e))}, 2);
}

Tensor AutoencoderKL::blend_h(const Tensor& a, const Tensor& b, int64_t extent) const {
  Backend& be = *be_;
  const int64_t e = std::min({a.size(3), b.size(3), extent});
  if (e <= 0) return b;
  Tensor wa = Tensor::empty({e}), wb = Tensor::empty({e});
  for (int64_t x = 0; x < e; ++x) {
    wa.data<float>()[x] = float(1.0 - double(x) / double(e));
    wb.data<float>()[x] = float(double(x) / double(e));
  }
  Tensor left = be.binary(BinaryOp::Add,
                          be.binary(BinaryOp::Mul, be.contiguous(a.narrow(3, a.size(3) - e, e)), be.from_host(wa)),
                          be.binary(BinaryOp::Mul, be.contiguous(b.narrow(3, 0, e)), be.from_host(wb)));
  if (e == b.size(3)) return left;
  return be.cat({left, be.contiguous(b.narrow(3, e, b.size(3) - e))}, 3);
}

// The second half of tiled_encode/tiled_decode. diffusers' blend_v/blend_h write into the tile in
// place, so a tile's right and lower neighbours blend against its already-blended values: the
// blended tile is stored back into `rows` to reproduce that.
Tensor AutoencoderKL::merge_tiles(std::vector<std::vector<Tensor>>& rows, int64_t blend_extent, int64_t row_limit) const {
  Backend& be = *be_;
  std::vector<Tensor> result_rows;
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<Tensor> result_row;
    for (size_t j = 0; j < rows[i].size(); ++j) {
      Tensor tile = rows[i][j];
      if (i > 0) tile = blend_v(rows[i - 1][j], tile, blend_extent);
      if (j > 0) tile = blend_h(rows[i][j - 1], tile, blend_extent);
      rows[i][j] = tile;
      const int64_t h = std::min(row_limit, tile.size(2)), w = std::min(row_limit, tile.size(3));
      result_row.push_back(be.contiguous(tile.narrow(2, 0, h).narrow(3, 0, w)));
    }
    result_rows.push_back(result_row.size() == 1 ? result_row[0] : be.cat(result_row, 3));
  }
  return result_rows.size() == 1 ? result_rows[0] : be.cat(result_rows, 2);
}

namespace {
void check_tiling_config(const AutoencoderKLConfig& c, int64_t overlap_size) {
  if (c.sample_size_is_list) {
    throw_error("E_UNSUPPORTED", "vae tiling: config sample_size is a list, which diffusers' tiling cannot compare with sizes",
                "sample_size");
  }
  if (overlap_size <= 0) {
    throw_error("E_UNSUPPORTED", "vae tiling: sample_size " + std::to_string(c.sample_size) + " is too small to tile", "sample_size");
  }
}
}  // namespace

Tensor AutoencoderKL::tiled_encode(const Tensor& x, Cancel cancel) const {
  Backend& be = *be_;
  const int64_t tile = tile_sample_min_size(), latent_tile = tile_latent_min_size();
  const int64_t overlap_size = int64_t(double(tile) * (1 - 0.25));
  const int64_t blend_extent = int64_t(double(latent_tile) * 0.25);
  const int64_t row_limit = latent_tile - blend_extent;
  check_tiling_config(config_, overlap_size);
  std::vector<std::vector<Tensor>> rows;
  for (int64_t i = 0; i < x.size(2); i += overlap_size) {
    std::vector<Tensor> row;
    for (int64_t j = 0; j < x.size(3); j += overlap_size) {
      Tensor t = x.narrow(2, i, std::min(tile, x.size(2) - i)).narrow(3, j, std::min(tile, x.size(3) - j));
      Tensor h = encoder(be.from_host(t.contiguous()), cancel);
      if (config_.use_quant_conv) h = quant_conv_(be, h);
      row.push_back(h);
    }
    rows.push_back(std::move(row));
  }
  return merge_tiles(rows, blend_extent, row_limit);
}

Tensor AutoencoderKL::tiled_decode(const Tensor& z, Cancel cancel) const {
  Backend& be = *be_;
  const int64_t tile = tile_sample_min_size(), latent_tile = tile_latent_min_size();
  const int64_t overlap_size = int64_t(double(latent_tile) * (1 - 0.25));
  const int64_t blend_extent = int64_t(double(tile) * 0.25);
  const int64_t row_limit = tile - blend_extent;
  check_tiling_config(config_, overlap_size);
  std::vector<std::vector<Tensor>> rows;
  for (int64_t i = 0; i < z.size(2); i += overlap_size) {
    std::vector<Tensor> row;
    for (int64_t j = 0; j < z.size(3); j += overlap_size) {
      Tensor t = z.narrow(2, i, std::min(latent_tile, z.size(2) - i)).narrow(3, j, std::min(latent_tile, z.size(3) - j));
      Tensor h = be.from_host(t.contiguous());
      if (config_.use_post_quant_conv) h = post_quant_conv_(be, h);
      row.push_back(decoder(h, cancel));
    }
    rows.push_back(std::move(row));
  }
  return merge_tiles(rows, blend_extent, row_limit);
}

// --- public entry points ---------------------------------------------------------------------------

Tensor AutoencoderKL::encode_moments(const Tensor& x, bool slicing, bool tiling, Cancel cancel) const {
  Backend& be = *be_;
  const int64_t tile = tile_sample_min_size();
  if (tiling && (x.size(3) > tile || x.size(2) > tile)) return tiled_encode(x, cancel);
  Tensor h;
  if (slicing && x.size(0) > 1) {
    std::vector<Tensor> slices;
    for (int64_t b = 0; b < x.size(0); ++b) slices.push_back(encoder(be.from_host(x.narrow(0, b, 1).contiguous()), cancel));
    h = be.cat(slices, 0);
  } else {
    h = encoder(be.from_host(x), cancel);
  }
  return config_.use_quant_conv ? quant_conv_(be, h) : h;
}

LatentDistribution AutoencoderKL::encode(const Tensor& x, bool slicing, bool tiling, const std::atomic<bool>* cancel) const {
  if (x.dim() != 4 || x.size(1) != config_.in_channels || x.size(0) < 1 || x.size(2) < 1 || x.size(3) < 1) {
    throw_error("E_INVALID_ARGUMENT", "vae.encode: expected an image batch [B, " + std::to_string(config_.in_channels) +
                                          ", H, W], got " + shape_str(x.shape()));
  }
  Tensor moments = be_->to_host(encode_moments(x.contiguous(), slicing, tiling, cancel)).contiguous();
  // DiagonalGaussianDistribution: torch.chunk(moments, 2, dim=1), clamp, exp(0.5 * logvar).
  const int64_t B = moments.size(0), L = config_.latent_channels, hw = moments.size(2) * moments.size(3);
  LatentDistribution d;
  d.mean = moments.narrow(1, 0, L).contiguous();
  d.logvar = moments.narrow(1, L, L).contiguous();
  d.std = Tensor::empty(d.logvar.shape());
  float* lv = d.logvar.data<float>();
  float* sd = d.std.data<float>();
  for (int64_t i = 0; i < B * L * hw; ++i) {
    lv[i] = std::min(std::max(lv[i], -30.0f), 20.0f);
    sd[i] = std::exp(0.5f * lv[i]);
  }
  return d;
}

Tensor AutoencoderKL::decode_one(const Tensor& z, bool tiling, Cancel cancel) const {
  Backend& be = *be_;
  const int64_t latent_tile = tile_latent_min_size();
  if (tiling && (z.size(3) > latent_tile || z.size(2) > latent_tile)) return tiled_decode(z, cancel);
  Tensor h = be.from_host(z);
  if (config_.use_post_quant_conv) h = post_quant_conv_(be, h);
  return decoder(h, cancel);
}

Tensor AutoencoderKL::decode(const Tensor& z, bool slicing, bool tiling, const std::atomic<bool>* cancel) const {
  Backend& be = *be_;
  if (z.dim() != 4 || z.size(1) != config_.latent_channels || z.size(0) < 1 || z.size(2) < 1 || z.size(3) < 1) {
    throw_error("E_INVALID_ARGUMENT", "vae.decode: expected latents [B, " + std::to_string(config_.latent_channels) +
                                          ", h, w], got " + shape_str(z.shape()));
  }
  const Tensor zc = z.contiguous();
  if (slicing && zc.size(0) > 1) {
    std::vector<Tensor> slices;
    for (int64_t b = 0; b < zc.size(0); ++b) slices.push_back(decode_one(zc.narrow(0, b, 1).contiguous(), tiling, cancel));
    return be.to_host(be.cat(slices, 0));
  }
  return be.to_host(decode_one(zc, tiling, cancel));
}

}  // namespace pia::nn
