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


# ---------------------------------------------------------------------------------------------
# One tiny model per family people render with (issue 14). Component sizes follow diffusers' own
# tests (tests/pipelines/<family>/test_*.py get_dummy_components), changed only where a 64x64
# picture needs it: a VAE that scales by 8 (Sana's DC-AE by 32, as the real one), and the
# transformer's sample_size of the real model where the pipeline bins sizes by it (PixArt, Sana).
# The hub cannot be reached, so every tokenizer is built here: CLIP's is the real one (above); the
# others (T5, BERT, Gemma, Qwen2) have a toy vocabulary of characters and a few words, saved in the
# class the real model uses, and load back with from_pretrained like any other.
# ---------------------------------------------------------------------------------------------

_WORDS = ("a", "the", "of", "cat", "dog", "oil", "painting", "ink", "drawing", "photo", "red", "blue")
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,:;!?'-()"


def t5_tokenizer(directory: Path):
    """A T5 tokenizer (Unigram over characters and a few words) saved with its tokenizer.json."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + w, -3.0) for w in _WORDS] + [(c, -5.0) for c in _CHARS]
    tokenizer = T5TokenizerFast(vocab=pieces, extra_ids=0)
    tokenizer.save_pretrained(directory)
    return T5TokenizerFast.from_pretrained(directory)


def bert_tokenizer(directory: Path):
    """A BERT WordPiece tokenizer (characters and a few words)."""
    from transformers import BertTokenizerFast

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS, *_CHARS, *("##" + c for c in _CHARS)]
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(dict.fromkeys(tokens))})
    tokenizer.save_pretrained(directory)
    return BertTokenizerFast.from_pretrained(directory)


def gemma_tokenizer(directory: Path):
    """A Gemma BPE tokenizer (characters, no merges)."""
    from transformers import GemmaTokenizerFast

    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "\u2581", *_CHARS, *_CHARS.upper()]
    tokenizer = GemmaTokenizerFast(vocab={t: i for i, t in enumerate(dict.fromkeys(tokens))}, merges=[])
    tokenizer.save_pretrained(directory)
    return GemmaTokenizerFast.from_pretrained(directory)


def qwen2_tokenizer(directory: Path):
    """A Qwen2 byte-level BPE tokenizer with Qwen's chat tokens, its merges learnt here from
    QwenImage's prompt template and a few words: each word of the template is one token, as in
    Qwen's own vocabulary, so the template's system part is the 34 tokens QwenImagePipeline drops
    and what the encoder returns is about the prompt, not leftovers of the template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    template = (
        "system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, spatial "
        "relationships of the objects and background:\nuser\nassistant\n"
    )
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=1000, min_frequency=1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator([template] * 4 + [" ".join(_WORDS)] * 4, trainer)
    learnt = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learnt["merges"]]
    tokenizer = Qwen2TokenizerFast(
        vocab=learnt["vocab"], merges=merges, additional_special_tokens=["<|im_start|>", "<|im_end|>"]
    )
    tokenizer.save_pretrained(directory)
    return Qwen2TokenizerFast.from_pretrained(directory)


def _vae(latent_channels: int = 4, levels: int = 4, width: int = 8, **kwargs):
    """An AutoencoderKL of `levels` levels (scale 2**(levels-1)) at toy width."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(width,) * levels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        latent_channels=latent_channels,
        norm_num_groups=width,
        layers_per_block=1,
        **kwargs,
    )


def _clip(projection: bool = False, hidden: int = 32):
    """A CLIP text encoder for the real CLIP tokenizer; with a projection, as SDXL's and SD3's second one."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        projection_dim=32,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _t5(tokenizer, d_model: int = 32):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=d_model,
            d_ff=37,
            d_kv=8,
            num_heads=4,
            num_layers=2,
            relative_attention_num_buckets=8,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )


def sdxl_scheduler():
    """The Euler scheduler stabilityai/stable-diffusion-xl-base-1.0 ships with (its scheduler_config.json)."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )


def build_tiny_sdxl(directory: Path, seed: int = 0) -> Path:
    """StableDiffusionXLPipeline: two CLIP encoders (the second with a projection), a UNet with
    SDXL's text_time conditioning, the Euler scheduler SDXL base ships with."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six size/crop numbers + the pooled text
        cross_attention_dim=64,  # both encoders' hidden states side by side
        norm_num_groups=8,
    )
    clip = clip_tokenizer(directory.parent)
    pipe = StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=_clip(),
        text_encoder_2=_clip(projection=True),
        tokenizer=clip,
        tokenizer_2=clip,
        unet=unet,
        scheduler=sdxl_scheduler(),
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def build_tiny_sd3(directory: Path, seed: int = 0) -> Path:
    """StableDiffusion3Pipeline: two CLIP encoders with projections and a T5, an MMDiT, flow matching."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    t5_tok = t5_tokenizer(directory.parent / "t5-tokenizer")
    transformer = SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=64,  # the T5's width; the CLIPs' 32 + 32 are padded to it
        pooled_projection_dim=64,  # both CLIPs' pooled outputs side by side
        out_channels=4,
    )
    clip = clip_tokenizer(directory.parent)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        vae=_vae(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=_clip(projection=True),
        text_encoder_2=_clip(projection=True),
        text_encoder_3=_t5(t5_tok, d_model=64),
        tokenizer=clip,
        tokenizer_2=clip,
        tokenizer_3=t5_tok,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def build_tiny_flux(directory: Path, seed: int = 0, guidance_embeds: bool = True) -> Path:
    """FluxPipeline: CLIP + T5, a Flux transformer; guidance_embeds=True as FLUX.1-dev (the guidance
    is an input of the model, guidance-distilled), False as FLUX.1-schnell (no guidance at all)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    t5_tok = t5_tokenizer(directory.parent / "t5-tokenizer")
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels, packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
        guidance_embeds=guidance_embeds,
    )
    scheduler = (
        FlowMatchEulerDiscreteScheduler(
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )
        if guidance_embeds
        else FlowMatchEulerDiscreteScheduler(shift=1.0)
    )
    pipe = FluxPipeline(
        transformer=transformer,
        vae=_vae(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=_clip(),
        text_encoder_2=_t5(t5_tok, d_model=32),
        tokenizer=clip_tokenizer(directory.parent),
        tokenizer_2=t5_tok,
        scheduler=scheduler,
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def build_tiny_flux_schnell(directory: Path, seed: int = 0) -> Path:
    return build_tiny_flux(directory, seed, guidance_embeds=False)


def build_tiny_pixart_sigma(directory: Path, seed: int = 0) -> Path:
    """PixArtSigmaPipeline: a T5 and a PixArt transformer; sample_size 32 as PixArt-Sigma-XL-2-256,
    so the pipeline bins sizes as that model does (to its 256px sizes, by default)."""
    import torch
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    torch.manual_seed(seed)
    t5_tok = t5_tokenizer(directory.parent / "t5-tokenizer")
    transformer = PixArtTransformer2DModel(
        sample_size=32,
        num_layers=1,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=32,
        in_channels=4,
        cross_attention_dim=24,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    pipe = PixArtSigmaPipeline(
        tokenizer=t5_tok,
        text_encoder=_t5(t5_tok, d_model=32),
        vae=_vae(),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(),
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def build_tiny_sana(directory: Path, seed: int = 0) -> Path:
    """SanaPipeline: a Gemma2 encoder, a linear-attention transformer, a DC-AE that scales by 32;
    sample_size 16 as Sana's 512px models, so the pipeline bins sizes to those (by default)."""
    import torch
    from diffusers import AutoencoderDC, DPMSolverMultistepScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(seed)
    tokenizer = gemma_tokenizer(directory.parent / "gemma-tokenizer")
    transformer = SanaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=4,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=8,
        sample_size=16,
    )
    levels = 6
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock",) * (levels - 1) + ("EfficientViTBlock",),
        decoder_block_types=("ResBlock",) * (levels - 1) + ("EfficientViTBlock",),
        encoder_block_out_channels=(8,) * levels,
        decoder_block_out_channels=(8,) * levels,
        encoder_qkv_multiscales=((),) * (levels - 1) + ((5,),),
        decoder_qkv_multiscales=((),) * (levels - 1) + ((5,),),
        encoder_layers_per_block=(1,) * levels,
        decoder_layers_per_block=(1,) * levels,
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    text_encoder = Gemma2Model(
        Gemma2Config(
            head_dim=16,
            hidden_size=8,
            initializer_range=0.02,
            intermediate_size=64,
            max_position_embeddings=8192,
            num_attention_heads=2,
            num_hidden_layers=1,
            num_key_value_heads=2,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            attn_implementation="eager",
        )
    )
    scheduler = DPMSolverMultistepScheduler(  # as the Sana models on the hub: DPM-Solver++ on flow sigmas
        flow_shift=3.0, prediction_type="flow_prediction", use_flow_sigmas=True
    )
    pipe = SanaPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def _lcm_scheduler():
    from diffusers import LCMScheduler

    return LCMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1
    )


def build_tiny_lcm(directory: Path, seed: int = 0) -> Path:
    """LatentConsistencyModelPipeline: an SD-1.x-shaped UNet distilled to take the guidance as an
    input (time_cond_proj_dim), and the LCMScheduler; no negative prompt, no CFG."""
    import torch
    from diffusers import LatentConsistencyModelPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    text_encoder = _tiny_text_encoder()
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
        time_cond_proj_dim=32,
    )
    pipe = LatentConsistencyModelPipeline(
        vae=_tiny_vae(),
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(directory.parent),
        unet=unet,
        scheduler=_lcm_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def build_tiny_sd_lcm(directory: Path, seed: int = 0) -> Path:
    """SD 1.x with an LCM-LoRA-style setup: StableDiffusionPipeline whose own scheduler is LCMScheduler
    (the pipeline runs CFG when guidance > 1, as for any SD model)."""
    from diffusers import StableDiffusionPipeline

    build_tiny_sd(directory, seed)
    pipe = StableDiffusionPipeline.from_pretrained(directory)
    pipe.scheduler = _lcm_scheduler()
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def build_tiny_hunyuan_dit(directory: Path, seed: int = 0) -> Path:
    """HunyuanDiTPipeline: a BERT and a T5 encoder, the HunyuanDiT transformer, DDPM with
    v-prediction as HunyuanDiT-Diffusers ships."""
    import torch
    from diffusers import DDPMScheduler, HunyuanDiT2DModel, HunyuanDiTPipeline
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    bert_tok = bert_tokenizer(directory.parent / "bert-tokenizer")
    t5_tok = t5_tokenizer(directory.parent / "t5-tokenizer")
    transformer = HunyuanDiT2DModel(
        sample_size=8,
        num_layers=1,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        in_channels=4,
        cross_attention_dim=32,
        cross_attention_dim_t5=32,
        pooled_projection_dim=16,
        hidden_size=24,
        activation_fn="gelu-approximate",
    )
    bert = BertModel(
        BertConfig(
            vocab_size=len(bert_tok),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=512,
        ),
        add_pooling_layer=False,
    )
    pipe = HunyuanDiTPipeline(
        # narrower, and no attention over the latent grid: it renders 1024x1024 when asked 64x64 (binning)
        vae=_vae(width=4, mid_block_add_attention=False),
        text_encoder=bert,
        tokenizer=bert_tok,
        transformer=transformer,
        scheduler=DDPMScheduler(
            beta_start=0.00085,
            beta_end=0.03,
            beta_schedule="scaled_linear",
            prediction_type="v_prediction",
            steps_offset=1,
            clip_sample=False,
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        text_encoder_2=_t5(t5_tok, d_model=32),
        tokenizer_2=t5_tok,
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def build_tiny_qwenimage(directory: Path, seed: int = 0) -> Path:
    """QwenImagePipeline: a Qwen2.5-VL text encoder, the QwenImage MMDiT, its causal-3D VAE (scale 8)."""
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = qwen2_tokenizer(directory.parent / "qwen2-tokenizer")
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=1,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    with torch.no_grad():  # at random weights the picture hardly depends on the prompt (2 levels of 255);
        for block in transformer.transformer_blocks:  # louder text values make prompt and CFG show (~50)
            block.attn.add_v_proj.weight.mul_(10)
    z_dim = 4
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=z_dim,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],  # three downsamplings: scale 8, as the real one
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
    )
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16,
        vocab_size=152064,
        vision_end_token_id=151653,
        vision_start_token_id=151652,
        vision_token_id=151654,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256,
        base_shift=0.5,
        max_image_seq_len=8192,
        max_shift=0.9,
        shift=1.0,
        shift_terminal=0.02,
        time_shift_type="exponential",
        use_dynamic_shifting=True,
    )
    pipe = QwenImagePipeline(
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        text_encoder=Qwen2_5_VLForConditionalGeneration(config).eval(),
        tokenizer=tokenizer,
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


FAMILIES = {
    "sdxl": build_tiny_sdxl,
    "sd3": build_tiny_sd3,
    "flux-dev": build_tiny_flux,
    "flux-schnell": build_tiny_flux_schnell,
    "pixart-sigma": build_tiny_pixart_sigma,
    "sana": build_tiny_sana,
    "lcm": build_tiny_lcm,
    "sd-lcm": build_tiny_sd_lcm,
    "hunyuan-dit": build_tiny_hunyuan_dit,
    "qwenimage": build_tiny_qwenimage,
}
