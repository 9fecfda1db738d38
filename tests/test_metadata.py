from PIL import Image

from gallery.metadata import a1111_parameters, encode_png, read_parameters

RECIPE = {
    "format": 1,
    "model": "hub:m@main",
    "pipeline": "auto",
    "scheduler": "ddim",
    "scheduler_options": {},
    "prompt": "cat wearing sunglasses as a painting of Dalí (1929), surrealist",
    "negative_prompt": "",
    "seed": 3,
    "steps": 250,
    "guidance": 7.5,
    "width": 256,
    "height": 256,
}


def test_a1111_layout():
    text = a1111_parameters(RECIPE, "CompVis/ldm-text2im-large-256")
    assert text == (
        "cat wearing sunglasses as a painting of Dalí (1929), surrealist\n"
        "Steps: 250, Sampler: DDIM, CFG scale: 7.5, Seed: 3, Size: 256x256, "
        "Model: CompVis/ldm-text2im-large-256"
    )
    with_negative = a1111_parameters(dict(RECIPE, negative_prompt="blurry", guidance=7.0), "m")
    assert with_negative.splitlines()[1] == "Negative prompt: blurry"
    assert "CFG scale: 7," in with_negative


def test_png_carries_parameters_even_for_emoji():
    params = a1111_parameters(dict(RECIPE, prompt="a cat 🐱 مرحبا"), "m")
    png = encode_png(Image.new("RGB", (8, 8)), params, RECIPE)
    assert read_parameters(png) == params


def test_the_sampler_is_named_as_automatic1111_names_it_never_default():
    from gallery.metadata import a1111_parameters
    from gallery.schedulers import label_of

    assert label_of("DPMSolverMultistepScheduler") == "DPM++ 2M"
    assert label_of("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}) == "DPM++ 2M Karras"
    assert label_of("EulerAncestralDiscreteScheduler") == "Euler a"
    assert label_of("FlowMatchEulerDiscreteScheduler") == "Euler"
    assert label_of("SomeNewScheduler") == "SomeNew"
    recipe = {
        "prompt": "a cat",
        "negative_prompt": "",
        "scheduler": "default",
        "guidance": 7.5,
        "steps": 20,
        "seed": 1,
        "width": 64,
        "height": 64,
    }
    assert "Sampler: Euler a," in a1111_parameters(recipe, "m", "Euler a")
    assert "Sampler: DDIM," in a1111_parameters({**recipe, "scheduler": "ddim"}, "m", "Euler a")  # as asked
