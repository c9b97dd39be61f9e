#!/usr/bin/env python3
"""PyTorch's side of the issue-7 benchmark: diffusers' UNetMotionModel with the same config as
bench/native/bench_cuda.cpp (SD-1.5 UNet + PIA motion adapter, random weights), one step at
512x512 (64x64 latents), 16 frames, CFG batch 2, bf16, on the same GPU: eager and torch.compile.

diffusers is never vendored here: point PIA_DIFFUSERS_SRC at a checkout's `src` folder (or at a
folder holding the `diffusers` package); an installed diffusers is used when it is not set.

  python3 bench/torch_unet_motion.py [--ours SECONDS] [--dtype bf16|f16] [--no-compile]

--ours: our seconds per UNet step from the native benchmark in the same run (scripts/gpu-run.sh
passes it), to print the ratios. Exits 0 with a `skip` line where torch, CUDA or diffusers is missing.
"""
import argparse
import json
import os
import sys
import time

# Same as test/native/sd15_random_weights.h (kUnetConfig, kAdapterConfig).
UNET_CONFIG = {
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
ADAPTER_CONFIG = {
    "block_out_channels": [320, 640, 1280, 1280], "conv_in_channels": 9, "motion_layers_per_block": 2,
    "motion_max_seq_length": 32, "motion_mid_block_layers_per_block": 1, "motion_norm_num_groups": 32,
    "motion_num_attention_heads": 8, "use_motion_mid_block": False,
}
B, F, H, W = 2, 16, 64, 64


def skip(why):
    print(f"  skip torch comparison: {why}")
    sys.exit(0)


def time_steps(fn, warmup, iters, torch):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", type=float, default=None, help="our seconds per UNet step (same GPU, same run)")
    ap.add_argument("--dtype", choices=["bf16", "f16"], default="bf16")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args()

    src = os.environ.get("PIA_DIFFUSERS_SRC")
    if src:
        sys.path.insert(0, src)
    try:
        import torch
    except ImportError:
        skip("python3 has no torch")
    if not torch.cuda.is_available():
        skip("torch sees no CUDA device")
    try:
        from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
        import diffusers
    except Exception as e:  # noqa: BLE001 - any import failure means no comparison
        skip(f"diffusers could not be imported ({e}); set PIA_DIFFUSERS_SRC to a diffusers checkout's src folder")

    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    torch.manual_seed(0)
    unet2d = UNet2DConditionModel(**UNET_CONFIG)
    adapter = MotionAdapter(**ADAPTER_CONFIG)
    unet = UNetMotionModel.from_unet2d(unet2d, adapter).to("cuda", dtype).eval()
    del unet2d, adapter
    sample = torch.randn(B, 9, F, H, W, device="cuda", dtype=dtype)
    ehs = torch.randn(B, 77, 768, device="cuda", dtype=dtype)

    def step(model):
        with torch.no_grad():
            return model(sample, 999, encoder_hidden_states=ehs).sample

    gpu = torch.cuda.get_device_name(0)
    print(f"  torch {torch.__version__}, diffusers {diffusers.__version__} from {os.path.dirname(diffusers.__file__)}, {gpu}")
    torch.cuda.reset_peak_memory_stats()
    eager = time_steps(lambda: step(unet), 2, args.iters, torch)
    results = {"gpu": gpu, "dtype": args.dtype, "eager_s": eager,
               "eager_peak_gib": torch.cuda.max_memory_allocated() / 2**30}
    print(f"  torch eager ({args.dtype}): {eager * 1e3:.1f} ms per UNet step, "
          f"peak {results['eager_peak_gib']:.2f} GiB")
    if not args.no_compile:
        compiled = torch.compile(unet)
        t0 = time.perf_counter()
        step(compiled)
        torch.cuda.synchronize()
        results["compile_s"] = time.perf_counter() - t0
        results["compiled_s"] = time_steps(lambda: step(compiled), 1, args.iters, torch)
        print(f"  torch.compile ({args.dtype}): {results['compiled_s'] * 1e3:.1f} ms per UNet step "
              f"(compiling took {results['compile_s']:.0f} s)")
    if args.ours:
        results["ours_s"] = args.ours
        print(f"  ours / torch eager: {args.ours / eager:.2f}x the time")
        if "compiled_s" in results:
            print(f"  ours / torch.compile: {args.ours / results['compiled_s']:.2f}x the time")
    print("  json " + json.dumps(results))


if __name__ == "__main__":
    main()
