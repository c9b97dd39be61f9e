#include "ip_adapter.h"

#include "../core/errors.h"

namespace pia::nn {

namespace {

thread_local std::vector<IpAttnSite>* t_sites = nullptr;
thread_local const IpCall* t_call = nullptr;

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

}  // namespace

IpSiteRecorder::IpSiteRecorder(std::vector<IpAttnSite>* sites) : previous_(t_sites) { t_sites = sites; }
IpSiteRecorder::~IpSiteRecorder() { t_sites = previous_; }

int ip_register(IpAttnSite site) {
  if (!t_sites) return -1;
  t_sites->push_back(std::move(site));
  return int(t_sites->size() - 1);
}

IpScope::IpScope(const IpCall* call) : previous_(t_call) { t_call = call; }
IpScope::~IpScope() { t_call = previous_; }
const IpCall* ip_active() { return t_call; }

IPAdapter::IPAdapter(std::shared_ptr<Backend> backend, WeightStore& w, ImageProjectionKind kind,
                     const std::vector<IpAttnSite>& sites, int64_t cross_attention_dim, int64_t encoder_positions)
    : be_(std::move(backend)), sites_(sites) {
  Backend& be = *be_;
  w.set_label("ip_adapter");
  PIA_CHECK(!sites.empty(), "E_UNSUPPORTED", "IP-Adapter: the UNet has no cross-attention layers");
  if (kind == ImageProjectionKind::Base) {
    projection_ = std::make_unique<ImageProjection>(w, be, "image_proj.", 4);
  } else {
    projection_ = std::make_unique<IPAdapterPlusImageProjection>(w, be, "image_proj.", encoder_positions);
  }
  PIA_CHECK(projection_->cross_attention_dim() == cross_attention_dim, "E_WEIGHTS_MISMATCH",
            "IP-Adapter: the image projection makes tokens of width " + std::to_string(projection_->cross_attention_dim()) +
                ", the UNet's cross_attention_dim is " + std::to_string(cross_attention_dim));

  // _convert_ip_adapter_attn_to_diffusers walks attn_processors (down_blocks, up_blocks, mid_block:
  // the order UNet2DConditionModel registers them) and gives each IP processor the next odd id.
  std::vector<size_t> order;
  for (const char* group : {"down_blocks.", "up_blocks.", "mid_block."}) {
    for (size_t i = 0; i < sites.size(); ++i) {
      if (starts_with(sites[i].name, group)) order.push_back(i);
    }
  }
  PIA_CHECK(order.size() == sites.size(), "E_BACKEND", "IP-Adapter: a UNet site outside the down/mid/up blocks");
  layers_.resize(sites.size());
  int key_id = 1;
  for (size_t slot : order) {
    const IpAttnSite& s = sites[slot];
    const std::string p = "ip_adapter." + std::to_string(key_id);
    // IPAdapterAttnProcessor: to_k_ip/to_v_ip = Linear(cross_attention_dim, hidden_size, bias=False).
    layers_[slot].to_k_ip = be.upload(w.get(p + ".to_k_ip.weight", {s.hidden_size, s.cross_attention_dim}));
    layers_[slot].to_v_ip = be.upload(w.get(p + ".to_v_ip.weight", {s.hidden_size, s.cross_attention_dim}));
    key_id += 2;
  }
  w.check_all_used();
}

Tensor IPAdapter::project(const Tensor& image_embeds) const {
  const Shape want = projection_->embeds_shape();
  Shape got = image_embeds.shape();
  PIA_CHECK(image_embeds.dim() == int64_t(want.size()) + 1 && image_embeds.size(0) > 0 &&
                Shape(got.begin() + 1, got.end()) == want,
            "E_INVALID_ARGUMENT",
            "imageEmbeds: expected [B, " + shape_str(want).substr(1) + " for this IP-Adapter, got " + shape_str(got));
  return (*projection_)(*be_, be_->from_host(image_embeds.contiguous()));
}

IpCall make_ip_call(const IPAdapter& adapter, const std::vector<IpAttnSite>& sites, const Tensor& image_embeds_host,
                    int64_t batch, int64_t frames, float scale) {
  bool same = sites.size() == adapter.sites().size();
  for (size_t i = 0; same && i < sites.size(); ++i) {
    const IpAttnSite &a = sites[i], &b = adapter.sites()[i];
    same = a.name == b.name && a.hidden_size == b.hidden_size && a.cross_attention_dim == b.cross_attention_dim;
  }
  PIA_CHECK(same, "E_INVALID_ARGUMENT", "IP-Adapter: it was loaded for a UNet with other cross-attention layers");
  PIA_CHECK(image_embeds_host.dim() >= 1 && image_embeds_host.size(0) == batch, "E_INVALID_ARGUMENT",
            "imageEmbeds: batch " + std::to_string(image_embeds_host.dim() ? image_embeds_host.size(0) : 0) +
                " does not match the sample's batch " + std::to_string(batch));
  Backend& be = adapter.backend();
  Tensor tokens = adapter.project(image_embeds_host);
  std::vector<Tensor> rows;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t f = 0; f < frames; ++f) rows.push_back(tokens.narrow(0, b, 1));
  }
  IpCall call;
  call.adapter = &adapter;
  call.tokens = be.cat(rows, 0);
  call.scale = scale;
  return call;
}

Tensor ip_adapter_attention(Backend& be, const Attention& attn, int slot, const Tensor& x, const Tensor& text,
                            const IpCall& call) {
  const IPAdapter::Layer& l = call.adapter->layers().at(size_t(slot));
  Tensor q = attn.to_q(be, x);
  AttentionParams p;
  p.heads = attn.heads;
  p.scale = attn.scale;
  Tensor h = be.attention(q, attn.to_k(be, text), attn.to_v(be, text), p);
  Tensor ip = be.attention(q, be.linear(call.tokens, l.to_k_ip, {}), be.linear(call.tokens, l.to_v_ip, {}), p);
  // hidden_states + scale * ip_hidden_states: the product rounded first, as torch computes it.
  if (call.scale != 1.f) ip = be.affine(ip, call.scale);
  be.add_(h, ip);
  return attn.to_out(be, h);
}

}  // namespace pia::nn
