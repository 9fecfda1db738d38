"""Plan and keys: seeds, prompts, and exactly which settings change a cache key."""

from dataclasses import replace

from conftest import REPO, write_prompts
from gallery.config import load_config
from gallery.fingerprint import Memo, model_identities
from gallery.plan import cache_key
from gallery.project import open_project


def plan_of_file(path):
    return open_project(path).plan


def test_example_plan_shape_and_seeds():
    plan = plan_of_file(REPO / "prompts.yaml")
    assert len(plan.cells) == 108 and len(plan.jobs) == 1728
    cell = plan.cell(("cat", "dali"))
    assert cell.prompt == "cat wearing sunglasses as a painting of Dalí (1929), surrealist"
    assert cell.path == "cat/dali"
    # sample i has the same seed in every cell: a column compares styles on the same noise
    for other in plan.cells:
        assert [j.seed for j in other.jobs] == list(range(16))
    assert len({j.key for j in plan.jobs}) == 1728


def test_key_depends_on_the_picture_not_on_the_machine(tmp_path):
    base = load_config(REPO / "prompts.yaml")
    p = base.picture
    key = cache_key(p, "hub:x@main", "a cat", 3)
    assert key == cache_key(p, "hub:x@main", "a cat", 3)
    changed = [
        cache_key(p, "hub:y@main", "a cat", 3),
        cache_key(p, "hub:x@abc123", "a cat", 3),
        cache_key(p, "hub:x@main", "a dog", 3),
        cache_key(p, "hub:x@main", "a cat", 4),
    ] + [
        cache_key(replace(p, **{field: value}), "hub:x@main", "a cat", 3)
        for field, value in (
            ("steps", 249),
            ("guidance", 7.0),
            ("width", 512),
            ("height", 512),
            ("scheduler", "euler"),
            ("negative_prompt", "blurry"),
            ("pipeline", "StableDiffusionPipeline"),
            ("scheduler_options", (("eta", 0.5),)),
        )
    ]
    assert key not in changed and len(set(changed)) == len(changed)

    # how a picture is made (device, dtype, batch size, memory savers) is not part of its key
    def keys(folder: str, render: str) -> list[str]:
        prompts = write_prompts(
            tmp_path / folder,
            f"""
            render: {{model: hub/x, samples: 2, {render}}}
            axes: {{subject: {{cat: a cat, dog: a dog}}}}
        """,
        )
        return [job.key for job in plan_of_file(prompts).jobs]

    before = keys("base", "steps: 20")
    assert (
        keys(
            "machine",
            "steps: 20, device: cpu, dtype: float16, batch_size: 7, attention_slicing: true, "
            "vae_tiling: true, cpu_offload: sequential",
        )
        == before
    )
    assert not set(keys("picture", "steps: 21")) & set(before)  # while a picture setting changes every key


def test_changing_one_style_changes_exactly_its_images(tmp_path):
    text = (REPO / "prompts.yaml").read_text(encoding="utf-8")
    before = plan_of_file(REPO / "prompts.yaml")
    path = tmp_path / "prompts.yaml"
    path.write_text(text.replace("as a Byzantine mosaic", "as a Roman mosaic"), encoding="utf-8")
    after = plan_of_file(path)
    changed = {j.key for j in after.jobs} - {j.key for j in before.jobs}
    assert len(changed) == 144
    assert {j.cell[1] for j in after.jobs if j.key in changed} == {"mosaic"}


def test_one_axis_and_template(tmp_path):
    plan = plan_of_file(
        write_prompts(
            tmp_path,
            """
        prompt: "a photo of {thing}, 35mm"
        render: {samples: 2, seed: 100}
        axes:
          thing: {cat: a cat, empty: ""}
    """,
        )
    )
    assert [c.prompt for c in plan.cells] == ["a photo of a cat, 35mm", "a photo of , 35mm"]
    assert [j.seed for j in plan.jobs] == [100, 101, 100, 101]


def test_overrides_later_axis_wins(tmp_path):
    plan = plan_of_file(
        write_prompts(
            tmp_path,
            """
        render: {steps: 10}
        axes:
          a:
            x: {prompt: x, render: {steps: 20}}
            y: y
          b:
            p: p
            q: {prompt: q, render: {steps: 30, negative_prompt: blurry}}
    """,
        )
    )
    steps = {c.keys: c.picture.steps for c in plan.cells}
    assert steps == {("x", "p"): 20, ("x", "q"): 30, ("y", "p"): 10, ("y", "q"): 30}
    assert plan.cell(("y", "q")).picture.negative_prompt == "blurry"


def test_local_model_identity_is_its_content(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "model_index.json").write_text("{}")
    (model / "weights.safetensors").write_bytes(b"1234")
    ids = model_identities({(str(model), None)}, Memo(tmp_path / "cache"))
    (model / "weights.safetensors").write_bytes(b"1235")
    assert model_identities({(str(model), None)}, Memo(tmp_path / "cache")) != ids
    (model / "README.md").write_text("notes do not change the pictures")
    (model / "weights.safetensors").write_bytes(b"1234")
    assert model_identities({(str(model), None)}, Memo(tmp_path / "cache")) == ids
