#include "unet_motion_model.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "../core/errors.h"

namespace pia::nn {

namespace {

// ---- config.json reading --------------------------------------------------------------------------

const JsonValue* field(const JsonValue& o, const char* key) {
  const JsonValue* v = o.get(key);
  return v && v->kind != JsonValue::Kind::Null ? v : nullptr;
}

[[noreturn]] void bad_config(const std::string& what, const std::string& key, const std::string& msg) {
  throw_error("E_UNSUPPORTED", what + " config: '" + key + "' " + msg);
}

int64_t get_int(const JsonValue& o, const char* key, int64_t def, const char* what) {
  const JsonValue* v = field(o, key);
  if (!v) return def;
  if (v->kind != JsonValue::Kind::Number || v->number != std::floor(v->number)) bad_config(what, key, "must be an integer");
  return int64_t(v->number);
}

double get_num(const JsonValue& o, const char* key, double def, const char* what) {
  const JsonValue* v = field(o, key);
  if (!v) return def;
  if (v->kind != JsonValue::Kind::Number) bad_config(what, key, "must be a number");
  return v->number;
}

bool get_bool(const JsonValue& o, const char* key, bool def, const char* what) {
  const JsonValue* v = field(o, key);
  if (!v) return def;
  if (v->kind != JsonValue::Kind::Bool) bad_config(what, key, "must be true or false");
  return v->boolean;
}

std::string get_str(const JsonValue& o, const char* key, const std::string& def, const char* what) {
  const JsonValue* v = field(o, key);
  if (!v) return def;
  if (!v->is_string()) bad_config(what, key, "must be a string");
  return v->string;
}

std::vector<std::string> get_str_list(const JsonValue& o, const char* key, std::vector<std::string> def,
                                      const char* what) {
  const JsonValue* v = field(o, key);
  if (!v) return def;
  if (!v->is_array()) bad_config(what, key, "must be a list of strings");
  std::vector<std::string> out;
  for (const auto& e : v->array) {
    if (!e.is_string()) bad_config(what, key, "must be a list of strings");
    out.push_back(e.string);
  }
  return out;
}

std::vector<int64_t> get_int_list(const JsonValue& o, const char* key, std::vector<int64_t> def, const char* what) {
  const JsonValue* v = field(o, key);
  if (!v) return def;
  if (!v->is_array()) bad_config(what, key, "must be a list of integers");
  std::vector<int64_t> out;
  for (const auto& e : v->array) {
    if (e.kind != JsonValue::Kind::Number || e.number != std::floor(e.number) || e.number <= 0) {
      bad_config(what, key, "must be a list of positive integers");
    }
    out.push_back(int64_t(e.number));
  }
  return out;
}

// Keys whose non-default value diffusers' UNetMotionModel cannot represent: from_unet2d would drop
// their weights or fail to load them, so we refuse instead of computing something else.
void require_null(const JsonValue& o, const char* key, const char* what) {
  if (field(o, key)) bad_config(what, key, "is not supported by UNetMotionModel (must be null)");
}

void require_value(const JsonValue& o, const char* key, const std::string& expected, const char* what) {
  const JsonValue* v = field(o, key);
  if (!v) return;
  std::string got;
  if (v->is_string()) got = v->string;
  else if (v->kind == JsonValue::Kind::Bool) got = v->boolean ? "true" : "false";
  else if (v->kind == JsonValue::Kind::Number) {
    std::ostringstream s;
    s << v->number;
    got = s.str();
  } else {
    got = "<list or object>";
  }
  if (got != expected) bad_config(what, key, "= " + got + " is not supported by UNetMotionModel (only " + expected + ")");
}

// An int, or a list whose entries are all `value` (per-block settings such as transformer_layers_per_block).
void require_all(const JsonValue& o, const char* key, double value, const char* what) {
  const JsonValue* v = field(o, key);
  if (!v) return;
  auto ok = [&](const JsonValue& e) {
    return (e.kind == JsonValue::Kind::Number && e.number == value) ||
           (e.kind == JsonValue::Kind::Bool && double(e.boolean) == value);
  };
  bool good = v->is_array() ? true : ok(*v);
  if (v->is_array()) {
    for (const auto& e : v->array) good = good && ok(e);
  }
  if (!good) {
    std::ostringstream s;
    s << value;
    bad_config(what, key, "is not supported by UNetMotionModel (only " + s.str() + ")");
  }
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o + "\"";
}

}  // namespace

UNetMotionModelConfig UNetMotionModelConfig::from_unet2d(const JsonValue& u, const JsonValue& a) {
  const char* U = "UNet2DConditionModel";
  const char* A = "MotionAdapter";
  if (!u.is_object()) throw_error("E_UNSUPPORTED", "UNet2DConditionModel config must be a JSON object");
  if (!a.is_object()) throw_error("E_UNSUPPORTED", "MotionAdapter config must be a JSON object");
  require_value(u, "_class_name", "UNet2DConditionModel", U);
  require_value(a, "_class_name", "MotionAdapter", A);

  UNetMotionModelConfig c;
  // Defaults are UNet2DConditionModel.__init__'s: from_unet2d starts from the 2-D UNet's full config.
  c.sample_size = get_int(u, "sample_size", 0, U);
  c.in_channels = get_int(u, "in_channels", 4, U);
  c.out_channels = get_int(u, "out_channels", 4, U);
  c.block_out_channels = get_int_list(u, "block_out_channels", {320, 640, 1280, 1280}, U);
  const auto down = get_str_list(u, "down_block_types",
                                 {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}, U);
  const auto up = get_str_list(u, "up_block_types",
                               {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}, U);
  // from_unet2d maps any "CrossAttn" type to the CrossAttn*Motion block and the rest to the plain
  // one; only the two SD block types keep their weights meaningful under that mapping.
  for (const auto& t : down) {
    if (t == "CrossAttnDownBlock2D") c.down_block_types.push_back("CrossAttnDownBlockMotion");
    else if (t == "DownBlock2D") c.down_block_types.push_back("DownBlockMotion");
    else bad_config(U, "down_block_types", "entry '" + t + "' is not supported (CrossAttnDownBlock2D, DownBlock2D)");
  }
  for (const auto& t : up) {
    if (t == "CrossAttnUpBlock2D") c.up_block_types.push_back("CrossAttnUpBlockMotion");
    else if (t == "UpBlock2D") c.up_block_types.push_back("UpBlockMotion");
    else bad_config(U, "up_block_types", "entry '" + t + "' is not supported (CrossAttnUpBlock2D, UpBlock2D)");
  }
  if (c.down_block_types.size() != c.up_block_types.size() || c.block_out_channels.size() != c.down_block_types.size() ||
      c.block_out_channels.empty()) {
    bad_config(U, "block_out_channels", "down_block_types, up_block_types and block_out_channels must have the same length");
  }
  {
    const JsonValue* lpb = field(u, "layers_per_block");
    if (lpb && lpb->is_array()) bad_config(U, "layers_per_block", "must be a single integer for UNetMotionModel");
    c.layers_per_block = int(get_int(u, "layers_per_block", 2, U));
  }
  c.downsample_padding = int(get_int(u, "downsample_padding", 1, U));
  c.mid_block_scale_factor = float(get_num(u, "mid_block_scale_factor", 1, U));
  c.act_fn = get_str(u, "act_fn", "silu", U);
  if (u.get("norm_num_groups") && u.get("norm_num_groups")->kind == JsonValue::Kind::Null) {
    bad_config(U, "norm_num_groups", "null is not supported");
  }
  c.norm_num_groups = int(get_int(u, "norm_num_groups", 32, U));
  c.norm_eps = float(get_num(u, "norm_eps", 1e-5, U));
  {
    const JsonValue* cad = field(u, "cross_attention_dim");
    if (cad && cad->is_array()) bad_config(U, "cross_attention_dim", "must be a single integer for UNetMotionModel");
    c.cross_attention_dim = get_int(u, "cross_attention_dim", 1280, U);
  }
  c.use_linear_projection = get_bool(u, "use_linear_projection", false, U);
  // from_unet2d: `if not config.get("num_attention_heads"): num_attention_heads = attention_head_dim`
  // (SD's attention_head_dim 8 is really the head count).
  {
    const JsonValue* nah = field(u, "num_attention_heads");
    const char* key = "num_attention_heads";
    if (!nah || (nah->kind == JsonValue::Kind::Number && nah->number == 0)) {
      key = "attention_head_dim";
      nah = field(u, key);
    }
    if (!nah) {
      c.num_attention_heads.assign(c.block_out_channels.size(), 8);
    } else if (nah->is_array()) {
      for (int64_t h : get_int_list(u, key, {}, U)) c.num_attention_heads.push_back(int(h));
      if (c.num_attention_heads.size() != c.block_out_channels.size()) {
        bad_config(U, key, "must have one entry per down block");
      }
    } else {
      c.num_attention_heads.assign(c.block_out_channels.size(), int(get_int(u, key, 8, U)));
    }
  }
  require_value(u, "mid_block_type", "UNetMidBlock2DCrossAttn", U);
  if (u.get("mid_block_type") && u.get("mid_block_type")->kind == JsonValue::Kind::Null) {
    bad_config(U, "mid_block_type", "null is not supported (UNetMotionModel always has a mid block)");
  }
  require_all(u, "transformer_layers_per_block", 1, U);
  require_all(u, "only_cross_attention", 0, U);
  require_null(u, "reverse_transformer_layers_per_block", U);
  require_null(u, "encoder_hid_dim_type", U);
  require_null(u, "class_embed_type", U);
  require_null(u, "num_class_embeds", U);
  require_null(u, "addition_embed_type", U);
  require_null(u, "time_cond_proj_dim", U);
  require_null(u, "time_embedding_dim", U);
  require_null(u, "time_embedding_act_fn", U);
  require_null(u, "timestep_post_act", U);
  require_null(u, "cross_attention_norm", U);
  require_value(u, "resnet_time_scale_shift", "default", U);
  require_value(u, "time_embedding_type", "positional", U);
  require_value(u, "attention_type", "default", U);
  require_value(u, "dual_cross_attention", "false", U);
  require_value(u, "resnet_skip_time_act", "false", U);
  require_value(u, "conv_in_kernel", "3", U);
  require_value(u, "conv_out_kernel", "3", U);
  // Not read by UNetMotionModel (so not by us either): flip_sin_to_cos / freq_shift (time_proj is
  // hard-coded Timesteps(C, True, 0)), center_input_sample, resnet_out_scale_factor, upcast_attention,
  // dropout, mid_block_only_cross_attention, addition_* sizes.

  const auto adapter_channels = get_int_list(a, "block_out_channels", {320, 640, 1280, 1280}, A);
  if (adapter_channels != c.block_out_channels) {
    bad_config(A, "block_out_channels", "does not match the UNet's block_out_channels");
  }
  c.motion_layers_per_block = int(get_int(a, "motion_layers_per_block", 2, A));
  c.motion_mid_block_layers_per_block = int(get_int(a, "motion_mid_block_layers_per_block", 1, A));
  c.motion_num_attention_heads = int(get_int(a, "motion_num_attention_heads", 8, A));
  c.motion_norm_num_groups = int(get_int(a, "motion_norm_num_groups", 32, A));
  c.motion_max_seq_length = get_int(a, "motion_max_seq_length", 32, A);
  c.use_motion_mid_block = get_bool(a, "use_motion_mid_block", true, A);
  c.conv_in_channels = get_int(a, "conv_in_channels", 0, A);
  if (c.motion_layers_per_block != c.layers_per_block) {
    bad_config(A, "motion_layers_per_block", "must equal the UNet's layers_per_block");
  }
  if (c.use_motion_mid_block && c.motion_mid_block_layers_per_block != 1) {
    bad_config(A, "motion_mid_block_layers_per_block", "must be 1 (UNetMidBlockCrossAttnMotion has one layer)");
  }
  if (c.conv_in_channels) {
    // from_unet2d concatenates unet.conv_in.weight with adapter.conv_in.weight[:, 4:].
    if (c.in_channels != 4) bad_config(U, "in_channels", "must be 4 when the motion adapter has its own conv_in");
    if (c.conv_in_channels < 4) bad_config(A, "conv_in_channels", "must be at least 4");
    c.in_channels = c.conv_in_channels;
  }
  if (c.layers_per_block < 1 || c.norm_num_groups < 1 || c.motion_num_attention_heads < 1 ||
      c.motion_max_seq_length < 1) {
    throw_error("E_UNSUPPORTED", "UNetMotionModel config has a non-positive size");
  }
  return c;
}

std::string UNetMotionModelConfig::to_json() const {
  std::ostringstream o;
  o.precision(9);
  auto strs = [&](const std::vector<std::string>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + json_str(v[i]);
    return s + "]";
  };
  auto ints = [&](const auto& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  };
  o << "{\"_class_name\": \"UNetMotionModel\"";
  o << ", \"sample_size\": " << (sample_size ? std::to_string(sample_size) : "null");
  o << ", \"in_channels\": " << in_channels << ", \"out_channels\": " << out_channels;
  o << ", \"down_block_types\": " << strs(down_block_types) << ", \"up_block_types\": " << strs(up_block_types);
  o << ", \"block_out_channels\": " << ints(block_out_channels) << ", \"layers_per_block\": " << layers_per_block;
  o << ", \"downsample_padding\": " << downsample_padding << ", \"mid_block_scale_factor\": " << mid_block_scale_factor;
  o << ", \"act_fn\": " << json_str(act_fn) << ", \"norm_num_groups\": " << norm_num_groups
    << ", \"norm_eps\": " << norm_eps;
  o << ", \"cross_attention_dim\": " << cross_attention_dim
    << ", \"use_linear_projection\": " << (use_linear_projection ? "true" : "false");
  o << ", \"num_attention_heads\": " << ints(num_attention_heads);
  o << ", \"motion_max_seq_length\": " << motion_max_seq_length
    << ", \"motion_num_attention_heads\": " << motion_num_attention_heads
    << ", \"use_motion_mid_block\": " << (use_motion_mid_block ? "true" : "false");
  o << ", \"encoder_hid_dim\": null, \"encoder_hid_dim_type\": null}";
  return o.str();
}

UNetMotionModel::UNetMotionModel(std::shared_ptr<Backend> backend, const UNetMotionModelConfig& config,
                                 WeightStore& unet, WeightStore& adapter)
    : be_(std::move(backend)), config_(config) {
  Backend& be = *be_;
  const auto& c = config_;
  const int64_t C0 = c.block_out_channels[0];
  LoraTargetRecorder recorder(&lora_targets_);
  const int64_t time_embed_dim = C0 * 4;
  IpSiteRecorder ip_recorder(&ip_sites_);

  if (c.conv_in_channels) {
    // PIA: weight = cat(unet.conv_in.weight, adapter.conv_in.weight[:, 4:]) along input channels,
    // bias = unet.conv_in.bias; the adapter's own bias and first four channels are unused.
    Tensor wu = unet.get("conv_in.weight", {C0, 4, 3, 3}).to(DType::F32);
    Tensor wa = adapter.get("conv_in.weight", {C0, c.conv_in_channels, 3, 3}).to(DType::F32);
    adapter.ignore_key("conv_in.bias");
    Tensor w = Tensor::empty({C0, c.conv_in_channels, 3, 3});
    const int64_t k = 9, extra = c.conv_in_channels - 4;
    for (int64_t o = 0; o < C0; ++o) {
      std::memcpy(w.data<float>() + o * c.conv_in_channels * k, wu.data<float>() + o * 4 * k, size_t(4 * k) * sizeof(float));
      std::memcpy(w.data<float>() + (o * c.conv_in_channels + 4) * k, wa.data<float>() + (o * c.conv_in_channels + 4) * k,
                  size_t(extra * k) * sizeof(float));
    }
    conv_in_.weight = be.upload(w);
    conv_in_.bias = be.upload(unet.get("conv_in.bias", {C0}));
    conv_in_.params = Conv2dParams::same(1);
  } else {
    conv_in_.load(unet, be, "conv_in", c.in_channels, C0, 3, Conv2dParams::same(1));
  }
  time_proj_ = Timesteps{int(C0), true, 0.f};  // hard-coded in UNetMotionModel.__init__
  time_embedding_.load(unet, be, "time_embedding", C0, time_embed_dim, c.act_fn);

  MotionBlockConfig base;
  base.temb_channels = time_embed_dim;
  base.resnet_eps = c.norm_eps;
  base.resnet_act_fn = c.act_fn;
  base.resnet_groups = c.norm_num_groups;
  base.cross_attention_dim = c.cross_attention_dim;
  base.use_linear_projection = c.use_linear_projection;
  base.downsample_padding = c.downsample_padding;
  base.temporal_num_attention_heads = c.motion_num_attention_heads;
  base.temporal_max_seq_length = c.motion_max_seq_length;

  const size_t n = c.block_out_channels.size();
  int64_t output_channel = C0;
  down_blocks_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    MotionBlockConfig b = base;
    b.has_cross_attention = c.down_block_types[i] == "CrossAttnDownBlockMotion";
    b.num_layers = c.layers_per_block;
    b.in_channels = output_channel;
    output_channel = c.block_out_channels[i];
    b.out_channels = output_channel;
    b.add_resample = i + 1 != n;
    b.num_attention_heads = c.num_attention_heads[i];
    down_blocks_[i].load(unet, adapter, be, "down_blocks." + std::to_string(i), b);
  }

  {
    MotionBlockConfig m = base;
    m.has_cross_attention = true;
    m.num_layers = 1;
    m.in_channels = c.block_out_channels.back();
    m.output_scale_factor = c.mid_block_scale_factor;
    m.num_attention_heads = c.num_attention_heads.back();
    mid_block_.load(unet, adapter, be, "mid_block", m, c.use_motion_mid_block);
  }

  std::vector<int64_t> rev(c.block_out_channels.rbegin(), c.block_out_channels.rend());
  std::vector<int> rev_heads(c.num_attention_heads.rbegin(), c.num_attention_heads.rend());
  output_channel = rev[0];
  up_blocks_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const bool is_final = i + 1 == n;
    MotionBlockConfig b = base;
    b.has_cross_attention = c.up_block_types[i] == "CrossAttnUpBlockMotion";
    b.num_layers = c.layers_per_block + 1;
    b.prev_output_channel = output_channel;
    output_channel = rev[i];
    b.out_channels = output_channel;
    b.in_channels = rev[std::min(i + 1, n - 1)];
    b.add_resample = !is_final;
    if (!is_final) ++num_upsamplers_;
    b.num_attention_heads = rev_heads[i];
    b.resolution_idx = int(i);
    up_blocks_[i].load(unet, adapter, be, "up_blocks." + std::to_string(i), b);
  }

  conv_norm_out_.load(unet, be, "conv_norm_out", C0, c.norm_num_groups, c.norm_eps);
  conv_out_.load(unet, be, "conv_out", C0, c.out_channels, 3, Conv2dParams::same(1));

  unet.check_all_used();
  adapter.check_all_used();

  auto in_cross_attn_block = [&](const std::string& name) {
    if (name.rfind("mid_block.", 0) == 0) return true;
    for (size_t i = 0; i < n; ++i) {
      if (c.down_block_types[i] == "CrossAttnDownBlockMotion" && name.rfind("down_blocks." + std::to_string(i) + ".", 0) == 0) return true;
      if (c.up_block_types[i] == "CrossAttnUpBlockMotion" && name.rfind("up_blocks." + std::to_string(i) + ".", 0) == 0) return true;
    }
    return false;
  };
  for (LoraTarget& t : lora_targets_) {
    t.scaled = in_cross_attn_block(t.name) && t.name.find(".motion_modules.") == std::string::npos;
  }
  set_step_capture(step_capture_enabled_by_env());
}

std::shared_ptr<const UNetMotionModel> UNetMotionModel::with_lora(const std::vector<LoraContribution>& contributions) const {
  auto copy = std::make_shared<UNetMotionModel>(*this);
  copy->lora_ = contributions.empty() ? nullptr : build_lora_state(*be_, lora_targets_, contributions);
  // Recordings of this model hold its LoRA weights: the copy starts with none of its own.
  copy->steps_ = steps_ ? std::make_shared<StepGraphCache>(be_) : nullptr;
  return copy;
}

void UNetMotionModel::set_step_capture(bool on) {
  if (!on) steps_.reset();
  else if (!steps_ && be_->can_capture()) steps_ = std::make_shared<StepGraphCache>(be_);
}

namespace {

std::string bits(float v) {
  uint32_t u = 0;
  std::memcpy(&u, &v, sizeof u);
  return std::to_string(u);
}

}  // namespace

Tensor UNetMotionModel::forward(const Tensor& sample_host, float timestep, const Tensor& ehs_host,
                                const FreeUParams& freeu, Cancel cancel, float lora_scale) const {
  Backend& be = *be_;
  LoraScope lora(lora_.get(), lora_scale);
  const auto& c = config_;
  PIA_CHECK(sample_host.dim() == 5, "E_INVALID_ARGUMENT",
            "UNetMotionModel.forward: sample must be [B, C, F, H, W], got " + shape_str(sample_host.shape()));
  const int64_t B = sample_host.size(0), C = sample_host.size(1), F = sample_host.size(2), H = sample_host.size(3),
                W = sample_host.size(4);
  PIA_CHECK(C == c.in_channels, "E_INVALID_ARGUMENT",
            "UNetMotionModel.forward: sample has " + std::to_string(C) + " channels, the model takes " +
                std::to_string(c.in_channels));
  PIA_CHECK(B > 0 && F > 0 && H > 0 && W > 0, "E_INVALID_ARGUMENT", "UNetMotionModel.forward: empty sample");
  PIA_CHECK(F <= c.motion_max_seq_length, "E_INVALID_ARGUMENT",
            "UNetMotionModel.forward: " + std::to_string(F) + " frames exceed motion_max_seq_length " +
                std::to_string(c.motion_max_seq_length));
  PIA_CHECK(ehs_host.dim() == 3 && ehs_host.size(0) == B && ehs_host.size(2) == c.cross_attention_dim,
            "E_INVALID_ARGUMENT",
            "UNetMotionModel.forward: encoder_hidden_states must be [" + std::to_string(B) + ", S, " +
                std::to_string(c.cross_attention_dim) + "], got " + shape_str(ehs_host.shape()));
  PIA_CHECK(std::isfinite(timestep), "E_INVALID_ARGUMENT", "UNetMotionModel.forward: timestep must be finite");

  // Everything that changes from call to call enters the step as an input (host tensors, or the
  // IP-Adapter's tokens already on the device), so that a recorded step can be replayed with new
  // values copied into its input buffers. The step body below reads nothing else per call.
  std::vector<Tensor> inputs{sample_host, ehs_host,
                             // The timestep embedding of each sample, repeat_interleave'd over its
                             // frames: every row is the same timestep, so the B·F rows are computed directly.
                             time_proj_.host(std::vector<float>(size_t(B * F), timestep))};
  const IpCall* ip = ip_active();
  size_t ip_input = 0;
  if (ip) {
    ip_input = inputs.size();
    inputs.push_back(ip->tokens);
  }
  struct ScaleInput {
    int resolution_idx;
    int64_t channels;
    size_t input;
  };
  std::vector<ScaleInput> freeu_inputs;
  if (freeu.enabled()) {
    for (const auto& blk : up_blocks_) {
      if (!blk.freeu_applies()) continue;
      for (int64_t ch : blk.hidden_channels) {
        bool have = false;
        for (const auto& f : freeu_inputs) have = have || (f.resolution_idx == blk.resolution_idx && f.channels == ch);
        if (have) continue;
        freeu_inputs.push_back({blk.resolution_idx, ch, inputs.size()});
        inputs.push_back(freeu_scale_host(ch, blk.resolution_idx == 0 ? freeu.b1 : freeu.b2));
      }
    }
  }

  auto body = [&](const std::vector<Tensor>& in) -> Tensor {
    IpCall ip_call;
    if (ip) {
      ip_call = *ip;
      ip_call.tokens = in[ip_input];
    }
    IpScope ip_scope(ip ? &ip_call : nullptr);
    FreeUCall freeu_call;
    freeu_call.params = freeu;
    for (const auto& f : freeu_inputs) freeu_call.scales.push_back({f.resolution_idx, f.channels, in[f.input]});

    Tensor emb = time_embedding_(be, in[2]);
    const Tensor& ehs = in[1];
    std::vector<Tensor> rows;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t f = 0; f < F; ++f) rows.push_back(ehs.narrow(0, b, 1));
    }
    Tensor ehs_frames = be.cat(rows, 0);  // encoder_hidden_states.repeat_interleave(F, dim=0)
    rows.clear();

    Tensor x = be.contiguous(in[0].permute({0, 2, 1, 3, 4})).reshape({B * F, C, H, W});
    x = conv_in_(be, x);

    std::vector<Tensor> res;
    res.push_back(x);
    for (const auto& blk : down_blocks_) x = blk(be, x, emb, ehs_frames, F, res, cancel);
    x = mid_block_(be, x, emb, ehs_frames, F, cancel);

    const int64_t factor = int64_t(1) << num_upsamplers_;
    const bool forward_upsample_size = H % factor != 0 || W % factor != 0;
    int64_t up_h = 0, up_w = 0;
    for (size_t i = 0; i < up_blocks_.size(); ++i) {
      const bool is_final = i + 1 == up_blocks_.size();
      const size_t take = up_blocks_[i].resnets.size();
      PIA_CHECK(res.size() >= take, "E_BACKEND", "UNetMotionModel: skip connections out of step");
      std::vector<Tensor> skips(res.end() - long(take), res.end());
      res.resize(res.size() - take);
      if (!is_final && forward_upsample_size) {
        up_h = res.back().size(2);
        up_w = res.back().size(3);
      }
      x = up_blocks_[i](be, x, skips, emb, ehs_frames, F, freeu_call, up_h, up_w, cancel);
    }
    check_cancel(cancel);

    x = conv_norm_out_(be, x, Activation::SiLU);
    x = conv_out_(be, x);
    const int64_t Co = x.size(1);
    return be.contiguous(x.reshape({B, F, Co, H, W}).permute({0, 2, 1, 3, 4}));
  };

  if (!steps_) return run_step_eagerly(be, inputs, body);
  // What changes the recorded kernels or their arguments besides the inputs' shapes (which the
  // cache adds). The IP-Adapter is named by its address: a new adapter's weights are uploaded,
  // which changes the weights generation and so drops every recording made before it.
  std::string key = "freeu " + bits(freeu.s1) + " " + bits(freeu.s2) + " " + bits(freeu.b1) + " " + bits(freeu.b2);
  key += " lora " + std::to_string(reinterpret_cast<uintptr_t>(lora_.get())) + " " + bits(lora_scale);
  if (ip) key += " ip " + std::to_string(reinterpret_cast<uintptr_t>(ip->adapter)) + " " + bits(ip->scale);
  return steps_->run(key, inputs, body, cancel);
}

}  // namespace pia::nn
