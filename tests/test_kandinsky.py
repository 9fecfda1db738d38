"""Kandinsky 2.2 as the hub stores it: a prior and a decoder in two repositories, the decoder's model
card naming the prior. Tiny random-weight copies are put into a Hugging Face hub cache of their own
(HF_HUB_CACHE), so `gallery build` takes the very path a hub id takes, offline."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import files_under, write_prompts
from gallery.cli import main
from gallery.config import Picture, load_config

DECODER, PRIOR = "kandinsky-community/kandinsky-2-2-decoder", "kandinsky-community/kandinsky-2-2-prior"
DECODER_COMMIT, PRIOR_COMMIT = "d" * 40, "a" * 40  # different: the decoder's revision is not the prior's


@pytest.fixture(scope="module")
def kandinsky(tmp_path_factory) -> dict[str, Path]:
    """hub: a hub cache holding both repositories; decoder_only: one holding the decoder alone;
    decoder: a local decoder folder whose card names the hub's prior; local: one whose card names a
    local prior folder (no hub cache needed)."""
    from tiny_pipelines import KANDINSKY_DECODER_CARD, build_tiny_kandinsky22, into_hub_cache

    root = tmp_path_factory.mktemp("kandinsky")
    prior, decoder = build_tiny_kandinsky22(root / "prior", root / "decoder", PRIOR)
    into_hub_cache(prior, root / "hub", PRIOR, PRIOR_COMMIT)
    into_hub_cache(decoder, root / "hub", DECODER, DECODER_COMMIT)
    into_hub_cache(decoder, root / "decoder-only", DECODER, DECODER_COMMIT)
    local = shutil.copytree(decoder, root / "local-decoder")
    (local / "README.md").write_text(KANDINSKY_DECODER_CARD.format(prior=prior), encoding="utf-8")
    (root / "empty").mkdir()
    return {
        "hub": root / "hub",
        "decoder_only": root / "decoder-only",
        "empty": root / "empty",
        "decoder": decoder,
        "local": local,
    }


def project(folder: Path, model: str | Path, extra: str = "") -> Path:
    return write_prompts(
        folder,
        f"""
        page: {{title: Kandinsky, default: {{subject: dog}}}}
        render:
          model: {model}
          steps: 2
          width: 64
          height: 64
          samples: 2
          seed: 10
          dtype: float32
          negative_prompt: blurry
          {extra}
        axes:
          subject: {{cat: a cat, dog: a dog}}
        """,
    )


def gallery(*runs: tuple[Path, Path]) -> list[tuple[int, str, str]]:
    """`python -m gallery build -c PROMPTS` with HF_HUB_CACHE=CACHE for each (prompts, cache), all at once."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gallery", "build", "-c", str(prompts)],
            # one thread each: builds that run at once on a few cores spend half their time spinning otherwise
            env={**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for prompts, cache in runs
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]


def images(prompts: Path) -> dict[tuple, tuple[dict, np.ndarray]]:
    """(cell, sample) -> (sidecar, pixels) of every image in the project's cache."""
    found = {}
    for side in (load_config(prompts).cache_dir / "images").rglob("*.json"):
        meta = json.loads(side.read_text())
        found[(*meta["cell"], meta["sample"])] = (meta, np.asarray(Image.open(side.with_suffix(".png")), dtype=int))
    return found


def test_the_hubs_decoder_renders_with_its_prior_and_a_negative_prompt_alone_or_in_a_batch(tmp_path, kandinsky):
    # the hub id, pinned to the decoder's commit, batches of 2 (the prior runs 4 rows: prompts and negatives);
    # the same decoder as a local folder through AutoPipelineForText2Image, one image at a time
    hub = project(tmp_path / "hub", DECODER, f"revision: '{DECODER_COMMIT}'\n          batch_size: 2")
    one = project(
        tmp_path / "one", kandinsky["decoder"], "pipeline: AutoPipelineForText2Image\n          batch_size: 1"
    )
    for code, out, err in gallery((hub, kandinsky["hub"]), (one, kandinsky["hub"])):
        assert code == 0 and "render: 4 images" in out, err
    batched, alone = images(hub), images(one)
    assert set(batched) == set(alone) == {(s, i) for s in ("cat", "dog") for i in (0, 1)}
    for where, (meta, pixels) in batched.items():
        assert meta["made"]["pipeline"] == "KandinskyV22CombinedPipeline" and meta["made"]["batch_size"] == 2
        assert meta["recipe"]["negative_prompt"] == "blurry" and pixels.shape == (64, 64, 3)
        assert alone[where][0]["made"]["batch_size"] == 1
        assert np.abs(pixels - alone[where][1]).max() <= 2, where  # the same image, within rounding
    assert len({pixels.tobytes() for _, pixels in batched.values()}) == 4  # each seed and prompt its own

    cache = load_config(hub).cache_dir
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    [(code, out, err)] = gallery((hub, kandinsky["hub"]))
    assert code == 0 and "all 4 images are cached" in out, err
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == stamps


def test_offline_the_message_names_both_repositories_to_download(tmp_path, kandinsky, monkeypatch, capsys):
    from huggingface_hub import constants

    prompts = project(tmp_path, DECODER)
    # the decoder is cached: its model card names the prior, which is not (the hub client reads the
    # cache's place at each call, so this is the path a process started with HF_HUB_CACHE takes)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(kandinsky["decoder_only"]))
    assert main(["build", "-c", str(prompts)]) == 1  # a model that cannot be loaded, as for any model
    err = capsys.readouterr().err
    assert f"'{PRIOR}' is not in the local Hugging Face cache" in err and "HF_HUB_OFFLINE=1" in err
    assert f"`hf download {PRIOR}`" in err and f"`hf download {DECODER}`" not in err, err
    assert "Traceback" not in err and not files_under(load_config(prompts).cache_dir / "images")
    # nothing cached: both
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(kandinsky["empty"]))
    assert main(["build", "-c", str(prompts)]) == 1
    err = capsys.readouterr().err
    assert f"`hf download {DECODER}` and `hf download {PRIOR}`" in err, err


def test_the_decoder_alone_is_refused_at_its_line(tmp_path, kandinsky, capsys):
    prompts = project(tmp_path, kandinsky["local"], "pipeline: KandinskyV22Pipeline")
    assert main(["build", "-c", str(prompts)]) == 2
    err = capsys.readouterr().err
    assert (
        "prompts.yaml:11: render.pipeline" in err and "KandinskyV22Pipeline is the decoder of a two-stage model" in err
    )
    assert "set pipeline: auto" in err
    # quantized, the prior would be handed the decoder's quantization: refused, not ignored
    prompts = project(tmp_path, kandinsky["local"], "quantize: int8")
    assert main(["build", "-c", str(prompts)]) == 2
    err = capsys.readouterr().err
    assert "prompts.yaml:11: render.quantize" in err and "not supported for a decoder" in err, err
    # a decoder folder without its model card: which prior is unknown
    bare = shutil.copytree(kandinsky["local"], tmp_path / "bare", ignore=shutil.ignore_patterns("README.md"))
    assert main(["build", "-c", str(project(tmp_path / "bare-project", bare))]) == 1
    err = capsys.readouterr().err
    assert "README.md is missing: a model card names the prior this decoder needs" in err, err
    assert f"prior: [{PRIOR}]" in err


def test_the_scheduler_chosen_is_the_one_the_decoder_runs(kandinsky):
    import diffusers

    from gallery import loading
    from gallery.config import Runtime

    def picture(scheduler: str) -> Picture:
        return Picture(str(kandinsky["local"]), None, "auto", scheduler, (), 2, 4.0, 64, 64, "")

    runtime = Runtime(1, 0, "cpu", "float32", 1, False, False, "none")
    pipe = loading.load_pipeline(picture("ddim"), loading.Target("cpu", "float32"), runtime)
    assert type(pipe).__name__ == "KandinskyV22CombinedPipeline"  # the local card names a local prior folder
    assert type(pipe.decoder_pipe.scheduler).__name__ == "DDIMScheduler"
    assert type(pipe.prior_pipe.scheduler).__name__ == "UnCLIPScheduler"  # the prior keeps its own
    loading.set_scheduler(pipe, picture("default"), diffusers)
    assert type(pipe.decoder_pipe.scheduler).__name__ == type(pipe.scheduler).__name__ == "DDPMScheduler"


def test_a_local_decoder_is_keyed_with_the_prior_its_card_names(tmp_path):
    from gallery.fingerprint import Memo, model_identities
    from tiny_pipelines import KANDINSKY_DECODER_CARD

    decoder, prior = tmp_path / "decoder", tmp_path / "prior"
    for folder in (decoder, prior):
        folder.mkdir()
        (folder / "model_index.json").write_text("{}", encoding="utf-8")

    def identity() -> str:
        return model_identities({(str(decoder), None)}, Memo(tmp_path))[(str(decoder), None)]

    plain = identity()
    (decoder / "README.md").write_text("---\nlicense: mit\n---\n# any model\n", encoding="utf-8")
    assert identity() == plain  # a model card is no part of other models' identity
    (decoder / "README.md").write_text(KANDINSKY_DECODER_CARD.format(prior=PRIOR), encoding="utf-8")
    assert identity() == f"{plain} prior:hub:{PRIOR}@main"
    (decoder / "README.md").write_text(KANDINSKY_DECODER_CARD.format(prior=prior), encoding="utf-8")
    local = identity()
    (prior / "model_index.json").write_text('{"changed": 1}', encoding="utf-8")
    assert identity() != local and identity().startswith(plain + " prior:sha256:")


def test_the_negative_prompt_counts_where_either_stage_guides():
    from gallery.families import ModelFacts, effect

    facts = ModelFacts("KandinskyV22CombinedPipeline")
    # the prior turns it into the decoder's negative image embedding: the decoder's CFG uses it ...
    assert effect(facts, 4.0, "blurry", {"prior_guidance_scale": 1}).negative
    # ... and the prior's CFG (diffusers' default 4) has it as its other half
    assert effect(facts, 1.0, "blurry", {}).negative
    assert not effect(facts, 1.0, "blurry", {"prior_guidance_scale": 1}).negative
    assert not effect(facts, 4.0, "", {}).negative
