"""Tiny random-weight text-to-image pipelines and latent upscalers, saved to disk like a hub snapshot.

The hub cannot be reached from the test machines, so the tests build the same architectures a
real model uses (Stable Diffusion, latent diffusion) at toy sizes, save them with
`save_pretrained`, and load them back through the very code that loads a hub model.
The tokenizer is the real CLIP one: its BPE vocabulary ships inside the open-clip-torch wheel.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path


def clip_tokenizer_files(directory: Path) -> Path:
    """Write vocab.json and merges.txt of the real CLIP tokenizer (49,408 ids) into `directory`."""
    spec = importlib.util.find_spec("open_clip")  # locate the wheel without importing it (no torchvision)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("open-clip-torch is needed for the CLIP vocabulary: pip install --no-deps open-clip-torch")
    bpe = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    byte_chars = _bytes_to_unicode()
    vocab = list(byte_chars) + [c + "</w>" for c in byte_chars]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding="utf-8")
    (directory / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )
    return directory


def _bytes_to_unicode() -> list[str]:
    """The 256 byte characters, in CLIP's order (as in open_clip's SimpleTokenizer)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def clip_tokenizer(workdir: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(clip_tokenizer_files(workdir / "clip-tokenizer")), model_max_length=77)


def _tiny_unet(cross_attention_dim: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def _tiny_vae():
    from diffusers import AutoencoderKL

    # Four levels make the VAE scale 8, as in the real models, so width/height mean the same.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
    )


def _tiny_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )


def build_tiny_sd(directory: Path, seed: int = 0) -> Path:
    """A Stable-Diffusion-1.x-shaped pipeline (StableDiffusionPipeline) at toy size."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    torch.manual_seed(seed)
    text_encoder = _tiny_text_encoder()  # drawn first, so the tiny model keeps the weights it always had
    pipe = StableDiffusionPipeline(
        vae=_tiny_vae(),
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(directory.parent),
        unet=_tiny_unet(32),
        scheduler=DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def build_tiny_ldm(directory: Path, seed: int = 0) -> Path:
    """A latent-diffusion text-to-image pipeline (LDMTextToImagePipeline, LDMBert) at toy size."""
    import torch
    from diffusers import DDIMScheduler, LDMTextToImagePipeline
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import LDMBertConfig, LDMBertModel

    torch.manual_seed(seed)
    bert = LDMBertModel(
        LDMBertConfig(
            vocab_size=49408,
            d_model=32,
            encoder_layers=2,
            encoder_ffn_dim=37,
            encoder_attention_heads=4,
            head_dim=8,
            max_position_embeddings=77,
        )
    )
    pipe = LDMTextToImagePipeline(
        vqvae=_tiny_vae(),
        bert=bert,
        tokenizer=clip_tokenizer(directory.parent),
        unet=_tiny_unet(32),
        scheduler=DDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1
        ),
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def build_tiny_ldsr(directory: Path, seed: int = 0) -> Path:
    """CompVis's latent-diffusion super-resolution (LDMSuperResolutionPipeline) at toy size: a UNet
    on the low-res image's grid (3 noise + 3 image channels) and a VQ decoder that scales 4x."""
    import torch
    from diffusers import DDIMScheduler, LDMSuperResolutionPipeline, UNet2DModel, VQModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=16,
        in_channels=6,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    vqvae = VQModel(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=3,
        num_vq_embeddings=64,
        norm_num_groups=8,
        layers_per_block=1,
    )
    scheduler = DDIMScheduler(beta_start=0.0015, beta_end=0.0155, beta_schedule="scaled_linear", clip_sample=False)
    LDMSuperResolutionPipeline(vqvae=vqvae, unet=unet, scheduler=scheduler).save_pretrained(
        directory, safe_serialization=True
    )
    return directory


def build_tiny_sd_upscaler(directory: Path, seed: int = 0) -> Path:
    """Stability's x4 upscaler (StableDiffusionUpscalePipeline) at toy size: a text-conditioned UNet
    on the low-res grid (4 latent + 3 image channels, the noise level as class label) and a VAE
    that scales 4x."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=7,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        # attention on the coarser level only, as in the real one: a 64px source is 4,096 tokens at full size
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
        num_class_embeds=1000,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        scaling_factor=0.08333,
    )
    pipe = StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=_tiny_text_encoder(),
        tokenizer=clip_tokenizer(directory.parent),
        unet=unet,
        low_res_scheduler=DDPMScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear"),
        scheduler=DDIMScheduler(
            beta_start=0.0001,
            beta_end=0.02,
            beta_schedule="scaled_linear",
            prediction_type="v_prediction",
            clip_sample=False,
            set_alpha_to_one=False,
        ),
        max_noise_level=350,
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def tiny_rrdbnet(scale: int, seed: int = 0, features: int = 16, blocks: int = 1):
    """Real-ESRGAN's generator (BasicSR's RRDBNet: the layer names of RealESRGAN_x2plus.pth and
    friends) at toy width, written here rather than taken from the loader under test. x2 and x1
    models first fold 2x2 / 4x4 pixels into channels (pixel unshuffle), as Real-ESRGAN's do."""
    grow = 32  # every released ESRGAN grows its dense blocks by 32 channels, and loaders assume it
    import torch
    from torch import nn
    from torch.nn import functional as F

    class DenseBlock(nn.Module):  # BasicSR's ResidualDenseBlock
        def __init__(self):
            super().__init__()
            for i in range(1, 6):
                setattr(self, f"conv{i}", nn.Conv2d(features + (i - 1) * grow, grow if i < 5 else features, 3, 1, 1))

        def forward(self, x):
            feats = [x]
            for i in range(1, 5):
                feats.append(F.leaky_relu(getattr(self, f"conv{i}")(torch.cat(feats, 1)), 0.2))
            return x + 0.2 * self.conv5(torch.cat(feats, 1))

    class RRDB(nn.Module):
        def __init__(self):
            super().__init__()
            self.rdb1, self.rdb2, self.rdb3 = DenseBlock(), DenseBlock(), DenseBlock()

        def forward(self, x):
            return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))

    class RRDBNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = scale
            fold = {1: 16, 2: 4}.get(scale, 1)
            self.conv_first = nn.Conv2d(3 * fold, features, 3, 1, 1)
            self.body = nn.Sequential(*(RRDB() for _ in range(blocks)))
            self.conv_body = nn.Conv2d(features, features, 3, 1, 1)
            self.conv_up1 = nn.Conv2d(features, features, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(features, features, 3, 1, 1)
            self.conv_hr = nn.Conv2d(features, features, 3, 1, 1)
            self.conv_last = nn.Conv2d(features, 3, 3, 1, 1)

        def forward(self, x):
            if self.scale in (1, 2):
                x = F.pixel_unshuffle(x, 4 // self.scale)
            feat = self.conv_first(x)
            feat = feat + self.conv_body(self.body(feat))
            for conv in (self.conv_up1, self.conv_up2):
                feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
            return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))

    torch.manual_seed(seed)
    net = RRDBNet().eval()
    with torch.no_grad():  # random weights, but a picture in 0..1 comes out (not all clipped to black)
        net.conv_last.weight.mul_(10)
        net.conv_last.bias.fill_(0.5)
    return net


def build_tiny_esrgan(path: Path, scale: int = 2, seed: int = 0) -> Path:
    """A tiny RRDBNet saved as Real-ESRGAN ships its weights: a .pth holding {"params_ema": state dict}
    (torch's zip pickle), or the plain state dict as .safetensors."""
    import torch

    state = {k: v.contiguous() for k, v in tiny_rrdbnet(scale, seed).state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"params_ema": state}, path)
    return path


KANDINSKY_DECODER_CARD = """---
license: apache-2.0
prior:
- {prior}
tags:
- text-to-image
- kandinsky
inference: false
---

# Kandinsky 2.2 (tiny random weights)
"""


def build_tiny_kandinsky22(prior_dir: Path, decoder_dir: Path, prior_id: str, seed: int = 0) -> tuple[Path, Path]:
    """Kandinsky 2.2 as the hub stores it, at toy size: a prior (KandinskyV22PriorPipeline: CLIP text
    and image encoders, a PriorTransformer) and a decoder (KandinskyV22Pipeline: an image-conditioned
    UNet and a MoVQ), two folders; the decoder's model card names `prior_id`, as the hub's
    kandinsky-community/kandinsky-2-2-decoder names kandinsky-community/kandinsky-2-2-prior.
    Configs after diffusers' tests (tests/pipelines/kandinsky2_2), schedulers as the hub's."""
    import torch
    from diffusers import (
        DDPMScheduler,
        KandinskyV22Pipeline,
        KandinskyV22PriorPipeline,
        PriorTransformer,
        UnCLIPScheduler,
        UNet2DConditionModel,
        VQModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    width = 32  # the CLIP embedding: the prior's output, the decoder's condition
    torch.manual_seed(seed)
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=12, embedding_dim=width, num_layers=1)
    prior.clip_std = torch.nn.Parameter(torch.ones(prior.clip_std.shape))  # zeros would make every embedding 0
    text_encoder = CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=width,
            projection_dim=width,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    image_encoder = CLIPVisionModelWithProjection(  # only its output for a black image is used (get_zero_embed)
        CLIPVisionConfig(
            hidden_size=width,
            projection_dim=width,
            image_size=32,
            patch_size=16,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=1,
        )
    )
    KandinskyV22PriorPipeline(
        prior=prior,
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(prior_dir.parent),
        scheduler=UnCLIPScheduler(
            variance_type="fixed_small_log",
            prediction_type="sample",
            num_train_timesteps=1000,
            clip_sample=True,
            clip_sample_range=10.0,
        ),
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
    ).save_pretrained(prior_dir, safe_serialization=True)

    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=8,  # mean and variance, as the real one
        addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(16, 32),
        layers_per_block=1,
        encoder_hid_dim=width,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
    )
    # Four levels make the MoVQ scale 8, as the real one's, so width/height mean the same; its spatial
    # norms take 32 groups.
    movq = VQModel(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 3 + ("AttnDownEncoderBlock2D",),
        up_block_types=("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=12,
        vq_embed_dim=4,
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        prediction_type="epsilon",
    )
    KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=movq).save_pretrained(
        decoder_dir, safe_serialization=True
    )
    (decoder_dir / "README.md").write_text(KANDINSKY_DECODER_CARD.format(prior=prior_id), encoding="utf-8")
    return prior_dir, decoder_dir


def into_hub_cache(folder: Path, hub_cache: Path, repo_id: str, commit: str) -> Path:
    """Copy a saved pipeline into a Hugging Face hub cache (HF_HUB_CACHE) as the hub client leaves a
    download: models--owner--name/snapshots/<commit>/..., refs/main naming the commit."""
    import shutil

    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return repo / "snapshots" / commit
