#pragma once
// IP-Adapter in the UNet (diffusers v0.26.3 loaders/unet.py _load_ip_adapter_weights and
// IPAdapterAttnProcessor): the spatial cross-attention layers (attn2 of the Transformer2DModels, never
// the motion modules) gain to_k_ip/to_v_ip projections of the image tokens, attended with their own
// softmax and added before to_out: to_out(text_attention + scale · image_attention).
//
// The UNet records its IP sites while it binds its weights (BasicTransformerBlock::load calls
// ip_register inside an IpSiteRecorder scope); an IPAdapter is built against those sites. A forward
// installs the call's image tokens and scale in an IpScope (thread-local, like lora.h's LoraScope);
// the cross-attention layers look their slot up there.
#include <memory>
#include <string>
#include <vector>

#include "attention_processor.h"
#include "image_projection.h"

namespace pia::nn {

struct IpAttnSite {
  std::string name;  // "down_blocks.0.attentions.0.transformer_blocks.0.attn2"
  int64_t hidden_size = 0, cross_attention_dim = 0;
};

class IpSiteRecorder {
 public:
  explicit IpSiteRecorder(std::vector<IpAttnSite>* sites);
  ~IpSiteRecorder();
  IpSiteRecorder(const IpSiteRecorder&) = delete;
  IpSiteRecorder& operator=(const IpSiteRecorder&) = delete;

 private:
  std::vector<IpAttnSite>* previous_;
};

// The slot of a newly bound cross-attention, or -1 when no recorder is active.
int ip_register(IpAttnSite site);

enum class ImageProjectionKind { Base, Plus };

// One loaded adapter: its image projection and, per UNet site, to_k_ip / to_v_ip.
class IPAdapter {
 public:
  // `weights` holds diffusers-named `image_proj.*` keys and the original `ip_adapter.<id>.to_{k,v}_ip.weight`
  // keys; ids are 1, 3, 5, … over the sites in diffusers' attn_processors order (down blocks, up
  // blocks, then the mid block). `encoder_positions` is the image encoder's token count (plus only).
  IPAdapter(std::shared_ptr<Backend> backend, WeightStore& weights, ImageProjectionKind kind,
            const std::vector<IpAttnSite>& sites, int64_t cross_attention_dim, int64_t encoder_positions);

  // The projected image tokens [B, T, cross_attention_dim] of image_embeds (host float32: [B, D]
  // base, [B, S, D] plus), as UNetMotionModel's encoder_hid_proj computes them.
  Tensor project(const Tensor& image_embeds) const;
  const ImageProjectionBase& projection() const { return *projection_; }
  Backend& backend() const { return *be_; }

  struct Layer {
    Tensor to_k_ip, to_v_ip;  // [hidden, cross]
  };
  const std::vector<Layer>& layers() const { return layers_; }
  // The UNet sites it was built for (a forward checks that its UNet has the same ones).
  const std::vector<IpAttnSite>& sites() const { return sites_; }

 private:
  std::shared_ptr<Backend> be_;
  std::unique_ptr<ImageProjectionBase> projection_;
  std::vector<Layer> layers_;  // by site slot
  std::vector<IpAttnSite> sites_;
};

// What one UNet forward uses: the adapter, its tokens repeated for every frame [B·F, T, cross] on
// the device, and the scale.
struct IpCall {
  const IPAdapter* adapter = nullptr;
  Tensor tokens;
  float scale = 1.f;
};

// The call state for a UNet with `sites`: the adapter's tokens [B, T, cross] repeated F times per
// batch row (repeat_interleave(F, dim=0) of the image tokens appended to the text in UNetMotionModel).
IpCall make_ip_call(const IPAdapter& adapter, const std::vector<IpAttnSite>& sites, const Tensor& image_embeds_host,
                    int64_t batch, int64_t frames, float scale);

class IpScope {
 public:
  explicit IpScope(const IpCall* call);
  ~IpScope();
  IpScope(const IpScope&) = delete;
  IpScope& operator=(const IpScope&) = delete;

 private:
  const IpCall* previous_;
};

const IpCall* ip_active();

// IPAdapterAttnProcessor on already-normed x [N, S, C] with the text context [N, Sk, cross].
Tensor ip_adapter_attention(Backend& be, const Attention& attn, int slot, const Tensor& x, const Tensor& text,
                            const IpCall& call);

}  // namespace pia::nn
