"""LoRA adapters per batch, on the real pipelines of the stand-ins and tiny LoRA files
(tests/loras.py), against diffusers' own PEFT integration called directly."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.loras import make_lora, pickled_lora, wrong_base_lora

from easel.domain.errors import InferenceError
from easel.domain.generation import AdapterSpec, EngineBatch, ImageSpec, TwoPass
from easel.engine import Engine
from easel.engine.adapters import PipelineAdapters, check_adapter_file, peft_name
from easel.engine.families import call_kwargs, stand_in_dir
from easel.engine.optimize import EngineOptions

# diffusers called directly (`direct`) warns on its second adapter in one model.
pytestmark = pytest.mark.filterwarnings("ignore:Already found a `peft_config`")

TIER = ["flux2", "zimage", "qwenimage"]
PROMPT = ImageSpec("a lighthouse at dusk", 7)


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loras")


def lora(loras: Path, family: str, seed: int, **options: Any) -> Path:
    """The tiny LoRA `seed` of `family` (written once per module)."""
    suffix = "-".join(f"{k}={v}" for k, v in sorted(options.items()))
    path = loras / f"{family}-{seed}{suffix}.safetensors"
    return path if path.exists() else make_lora(family, path, seed, **options)


def adapter(path: Path, weight: float = 1.0, name: str | None = None) -> AdapterSpec:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return AdapterSpec(name or path.stem, str(path), digest, weight)


def batch(family: str, *adapters: AdapterSpec, two_pass: TwoPass | None = None) -> EngineBatch:
    size = 128 if two_pass else 64
    return EngineBatch(f"easel/tiny-{family}", family, size, size, 2, 3.0, (PROMPT,),
                       two_pass=two_pass, adapters=adapters)


def draw(engine: Engine, family: str, *adapters: AdapterSpec) -> np.ndarray:
    return engine.generate(batch(family, *adapters))[0].pixels


def direct(model_cache: Path, family: str, *adapters: AdapterSpec) -> np.ndarray:
    """The image diffusers itself draws: a fresh pipeline from the same saved directory, the
    adapters through load_lora_weights + set_adapters, the engine's own call arguments."""
    import diffusers

    pipe = diffusers.DiffusionPipeline.from_pretrained(
        str(stand_in_dir(f"easel/tiny-{family}", model_cache / "tiny")))
    pipe.set_progress_bar_config(disable=True)
    for i, spec in enumerate(adapters):
        pipe.load_lora_weights(spec.path, adapter_name=f"a{i}")
    if adapters:
        pipe.set_adapters([f"a{i}" for i in range(len(adapters))], [s.weight for s in adapters])
    one = batch(family, *adapters)
    with torch.inference_mode():
        images = pipe(**call_kwargs(one, [torch.Generator().manual_seed(PROMPT.seed)])).images
    return (np.clip(images[0], 0.0, 1.0) * 255.0).round().astype(np.uint8)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-identical: the engine makes the calls diffusers makes, on the same CPU kernels. (Not
    a PSNR bound: a tiny qwenimage LoRA moves the image by only ~42 dB.)"""
    return bool(np.array_equal(a, b))


def padded_same(a: np.ndarray, b: np.ndarray) -> bool:
    """The same image but for rounding: a hot-swap slot pads an adapter's rank with zeros, which
    changes the shape of the matrix products, so the CPU kernels may add in another order and
    a value on a rounding edge lands one level off (1 of 12,288 values for a rank-2 adapter in
    a rank-8 slot on an AMD EPYC VM; none on an Intel one). The adapter itself moves the
    picture by 60 levels and more in places (17.5 dB from the image without it)."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return bool(diff.max() <= 1 and np.count_nonzero(diff) <= diff.size // 1000)


def fresh_engine(model_cache: Path, **options: Any) -> Engine:
    return Engine(model_cache, device="cpu", max_loaded=3, options=EngineOptions(**options))


@pytest.fixture(scope="module")
def engine(model_cache: Path) -> Engine:
    return fresh_engine(model_cache)


@pytest.mark.parametrize("family", TIER)
def test_an_adapter_changes_the_image_as_diffusers_does_and_off_is_the_base_model(
    model_cache: Path, loras: Path, family: str
) -> None:
    engine = fresh_engine(model_cache)
    base = draw(engine, family)  # before any adapter was loaded
    spec = adapter(lora(loras, family, 1), 0.8)
    adapted = draw(engine, family, spec)
    assert not np.array_equal(adapted, base)
    assert same(adapted, direct(model_cache, family, spec))
    # Off again: LoRA disabled is the base model exactly, not a weight of zero.
    assert np.array_equal(draw(engine, family), base)
    assert engine.loaded_adapters(f"easel/tiny-{family}") == [spec.name]  # still warm
    assert np.array_equal(draw(engine, family, spec), adapted)


@pytest.mark.parametrize("family", TIER)
def test_two_adapters_at_their_weights_match_diffusers_set_adapters(
    engine: Engine, model_cache: Path, loras: Path, family: str
) -> None:
    first = adapter(lora(loras, family, 1), 0.7)
    second = adapter(lora(loras, family, 2), -0.4)
    both = draw(engine, family, first, second)
    assert same(both, direct(model_cache, family, first, second))
    assert not np.array_equal(both, draw(engine, family, first))
    # The weights are the batch's: the same two adapters at other weights draw otherwise.
    other = (adapter(Path(first.path), 0.2), adapter(Path(second.path), 0.9))
    assert same(draw(engine, family, *other), direct(model_cache, family, *other))


def test_a_name_readded_with_another_file_is_another_adapter(
    engine: Engine, loras: Path
) -> None:
    old = adapter(lora(loras, "flux2", 1), name="style")
    new = adapter(lora(loras, "flux2", 2), name="style")
    assert not np.array_equal(draw(engine, "flux2", old), draw(engine, "flux2", new))
    assert peft_name(old) != peft_name(new)
    assert "." not in peft_name(adapter(Path(old.path), name="my.style v2"))


def test_least_recently_used_adapters_go_past_the_count_but_never_the_batchs_own(
    model_cache: Path, loras: Path
) -> None:
    engine = fresh_engine(model_cache, lora_cache_count=2)
    source = "easel/tiny-zimage"
    a, b, c = (adapter(lora(loras, "zimage", seed)) for seed in (1, 2, 3))
    draw(engine, "zimage", a)
    draw(engine, "zimage", b)
    draw(engine, "zimage", a)  # a is now the most recent
    draw(engine, "zimage", c)
    assert engine.loaded_adapters(source) == [a.name, c.name]
    pipe = engine.pipeline(source)
    assert set(pipe.get_list_adapters()["transformer"]) == {peft_name(a), peft_name(c)}
    three = draw(engine, "zimage", a, b, c)  # over the count, all three kept for the batch
    assert engine.loaded_adapters(source) == [a.name, b.name, c.name]
    assert same(three, direct(model_cache, "zimage", a, b, c))
    draw(engine, "zimage", b)
    assert engine.loaded_adapters(source) == [c.name, b.name]


def test_adapters_go_past_the_byte_budget(model_cache: Path, loras: Path) -> None:
    a, b = adapter(lora(loras, "qwenimage", 1)), adapter(lora(loras, "qwenimage", 2))
    probe = fresh_engine(model_cache)
    draw(probe, "qwenimage", a)
    one = probe._adapters["easel/tiny-qwenimage"].nbytes()
    assert one > 0
    engine = fresh_engine(model_cache, lora_cache_bytes=one * 3 // 2)
    draw(engine, "qwenimage", a)
    draw(engine, "qwenimage", b)
    assert engine.loaded_adapters("easel/tiny-qwenimage") == [b.name]
    both = draw(engine, "qwenimage", a, b)  # the batch's own stay, over the budget
    assert same(both, direct(model_cache, "qwenimage", a, b))


def test_unloading_a_pipeline_unloads_its_adapters(model_cache: Path, loras: Path) -> None:
    engine = Engine(model_cache, device="cpu", max_loaded=1)
    base = draw(engine, "flux2")
    draw(engine, "flux2", adapter(lora(loras, "flux2", 1)))
    draw(engine, "zimage")  # flux2 goes
    assert engine.loaded_adapters("easel/tiny-flux2") == []
    assert np.array_equal(draw(engine, "flux2"), base)


def test_the_two_pass_refiner_runs_with_the_batchs_adapters(
    model_cache: Path, loras: Path
) -> None:
    engine = fresh_engine(model_cache)
    plan = TwoPass(64, 64, 0.5)
    base = engine.generate(batch("zimage", two_pass=plan))[0].pixels
    spec = adapter(lora(loras, "zimage", 1))
    adapted = engine.generate(batch("zimage", spec, two_pass=plan))[0].pixels
    refiner = engine._refiners["easel/tiny-zimage"]
    assert refiner.transformer is engine.pipeline("easel/tiny-zimage").transformer
    assert refiner.get_active_adapters() == [peft_name(spec)]
    assert not np.array_equal(adapted, base)
    # Both passes back to the base model: bit-identical to the run before any adapter.
    assert np.array_equal(engine.generate(batch("zimage", two_pass=plan))[0].pixels, base)


def test_kohya_layout_loads_through_diffusers_converter(
    engine: Engine, model_cache: Path, loras: Path
) -> None:
    spec = adapter(lora(loras, "flux2", 5, layout="kohya"), 0.9)
    kohya = draw(engine, "flux2", spec)
    assert not np.array_equal(kohya, draw(engine, "flux2"))
    assert same(kohya, direct(model_cache, "flux2", spec))
    facts = check_adapter_file(spec.path, "flux2")
    assert (facts.format, facts.rank, facts.targets_text_encoder) == ("kohya", 4, False)
    assert facts.modules == 6  # the fused qkv is three modules in diffusers' layout


def test_cached_prompt_embeddings_follow_a_text_encoder_adapter(
    model_cache: Path, loras: Path
) -> None:
    """FLUX.1 LoRAs can adapt the text encoder: its prompt embeddings must not come from the
    cache filled without it (nor the other way round); transformer-only adapters share them."""
    engine = fresh_engine(model_cache)
    text = adapter(lora(loras, "flux", 3, text_encoder=True))
    base = draw(engine, "flux")  # fills the cache with the base encoder's embeddings
    with_text = draw(engine, "flux", text)
    assert same(with_text, direct(model_cache, "flux", text))
    assert np.array_equal(draw(engine, "flux"), base)
    assert check_adapter_file(text.path, "flux").targets_text_encoder
    hits = engine.text_cache.hits
    draw(engine, "flux", adapter(lora(loras, "flux", 4)))  # transformer only: a cache hit
    assert engine.text_cache.hits == hits + 1


def test_check_adapter_file_reports_what_a_good_file_holds(loras: Path, model_cache: Path
                                                           ) -> None:
    path = lora(loras, "flux2", 1)
    facts = check_adapter_file(path, "flux2")
    assert (facts.format, facts.rank, facts.targets_text_encoder, facts.modules) == (
        "diffusers", 4, False, 10)
    from safetensors.torch import load_file

    assert facts.tensor_bytes == sum(t.numel() * t.element_size()
                                     for t in load_file(str(path)).values())
    # Against a real base's config (the stand-in's folder here): names and shapes.
    base = str(stand_in_dir("easel/tiny-flux2", model_cache / "tiny"))
    assert check_adapter_file(path, "flux2", config_source=base).modules == 10


@pytest.mark.parametrize(("case", "family", "message"), [
    ("wrong base", "zimage", "targets modules that zimage does not have: .*another model"),
    ("wrong shapes", "flux2", "targets modules that flux2 does not have"),
    ("pickle", "flux2", r"only \.safetensors"),
    ("pickle named .safetensors", "flux2", "not a readable .safetensors"),
    ("mini", "mini", "mini family takes no LoRA adapters"),
    ("a scalar for a matrix", "flux2", "lora_A.weight is not a LoRA matrix"),
])
def test_check_adapter_file_refuses_with_a_clear_message(
    loras: Path, model_cache: Path, case: str, family: str, message: str
) -> None:
    config = None
    path = lora(loras, "flux2", 1)
    if case == "wrong base":
        path = wrong_base_lora(loras / "wrong.safetensors", made_for="flux2")
    elif case == "wrong shapes":  # flux2's names, a wider model's shapes (FLUX.2 dev on klein)
        path = wider(lora(loras, "flux2", 1), loras / "wider.safetensors")
        config = str(stand_in_dir("easel/tiny-flux2", model_cache / "tiny"))
    elif case == "pickle":
        path = pickled_lora(loras / "lora.pt")
    elif case == "pickle named .safetensors":
        path = pickled_lora(loras / "disguised.safetensors")
    elif case == "a scalar for a matrix":
        path = scalar(lora(loras, "flux2", 1), loras / "scalar.safetensors")
    with pytest.raises(ValueError, match=message):
        check_adapter_file(path, family, config_source=config)


def wider(path: Path, target: Path) -> Path:
    """`path` with one adapted module twice as wide as the stand-in's."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    key = "transformer.transformer_blocks.0.attn.to_q.lora_A.weight"
    state[key] = torch.zeros(state[key].shape[0], state[key].shape[1] * 2)
    save_file(state, str(target))
    return target


def scalar(path: Path, target: Path) -> Path:
    """`path` with one adapted module's A matrix replaced by a 0-d tensor."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    state["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"] = torch.tensor(1.0)
    save_file(state, str(target))
    return target


def test_a_family_without_a_lora_loader_says_so(engine: Engine, loras: Path) -> None:
    spec = adapter(lora(loras, "flux2", 1))
    mini = EngineBatch("easel/tiny-mini", "mini", 64, 64, 2, 3.0, (PROMPT,), adapters=(spec,))
    with pytest.raises(InferenceError, match="mini family takes no LoRA adapters"):
        engine.generate(mini)


# --- hot-swap (compile on) ----------------------------------------------------------------


def _hotswapped(model_cache: Path, family: str, count: int = 1) -> tuple[Any, PipelineAdapters]:
    import diffusers

    pipe = diffusers.DiffusionPipeline.from_pretrained(
        str(stand_in_dir(f"easel/tiny-{family}", model_cache / "tiny")))
    pipe.set_progress_bar_config(disable=True)
    return pipe, PipelineAdapters(pipe, family, 1 << 30, count, hotswap_rank=8)


def _call(pipe: Any, family: str, adapters: PipelineAdapters,
          specs: Sequence[AdapterSpec]) -> np.ndarray:
    adapters.apply(tuple(specs))
    one = batch(family, *specs)
    with torch.inference_mode():
        images = pipe(**call_kwargs(one, [torch.Generator().manual_seed(PROMPT.seed)])).images
    return (np.clip(images[0], 0.0, 1.0) * 255.0).round().astype(np.uint8)


def test_adapters_on_a_fused_denoiser_adapt_its_query_key_and_value(
    model_cache: Path, loras: Path
) -> None:
    """EASEL_FUSE_QKV runs one matmul for Q, K and V, which would leave an adapter's own
    query, key and value layers out (24 dB from the adapter's image, measured): the first
    adapters unfuse the pipeline, and it draws what the unfused engine draws."""
    spec = adapter(lora(loras, "flux2", 1))
    fused = fresh_engine(model_cache, fuse_qkv=True)
    base = draw(fused, "flux2")
    assert fused.applied["easel/tiny-flux2"] == ["fused-qkv"]
    assert same(draw(fused, "flux2", spec), draw(fresh_engine(model_cache), "flux2", spec))
    assert fused.applied["easel/tiny-flux2"] == []
    assert same(draw(fused, "flux2"), base)  # unfused, the base model draws as it did fused


def test_hot_swapped_adapters_draw_what_loaded_ones_do(model_cache: Path, loras: Path) -> None:
    """Ranks 2 and 4, alphas 8 and 4, into one slot padded to rank 8."""
    pipe, adapters = _hotswapped(model_cache, "flux2")
    base = _call(pipe, "flux2", adapters, [])
    first = adapter(lora(loras, "flux2", 6, rank=2, alpha=8), 0.5)
    second = adapter(lora(loras, "flux2", 1), 0.8)
    for spec in (first, second, first):
        drawn = _call(pipe, "flux2", adapters, [spec])
        assert padded_same(drawn, direct(model_cache, "flux2", spec))
        assert not padded_same(drawn, base)
        assert pipe.get_list_adapters()["transformer"] == ["slot_0"]  # swapped, never added
    assert np.array_equal(_call(pipe, "flux2", adapters, []), base)


def test_hot_swapping_does_not_recompile(model_cache: Path, loras: Path) -> None:
    """The denoiser compiled (eager backend: dynamo's tracing and guards, no code generation)
    once per slot set; switching the adapters in the slots and their weights reuses it."""
    import torch._dynamo

    pipe, adapters = _hotswapped(model_cache, "flux2", count=2)
    a = adapter(lora(loras, "flux2", 6, rank=2, alpha=8))  # its slot is padded to rank 8
    b, c = (adapter(lora(loras, "flux2", seed)) for seed in (2, 3))  # rank 4
    _call(pipe, "flux2", adapters, [a, b])  # both slots open
    torch._dynamo.reset()
    pipe.transformer.compile(backend="eager", fullgraph=True)
    first = _call(pipe, "flux2", adapters, [a, b])
    with torch._dynamo.config.patch(error_on_recompile=True):
        swapped = _call(pipe, "flux2", adapters, [c, replace_weight(b, 0.3)])
        assert not np.array_equal(swapped, first)
        assert padded_same(swapped, direct(model_cache, "flux2", c, replace_weight(b, 0.3)))
        _call(pipe, "flux2", adapters, [a])
    torch._dynamo.reset()


def replace_weight(spec: AdapterSpec, weight: float) -> AdapterSpec:
    return AdapterSpec(spec.name, spec.path, spec.digest, weight)


def test_the_engine_hot_swaps_with_compile_or_when_asked(model_cache: Path, loras: Path) -> None:
    assert EngineOptions(compile=True).hotswap_rank == 128
    assert EngineOptions().hotswap_rank is None
    engine = fresh_engine(model_cache, lora_hotswap=True, lora_max_rank=4, lora_cache_count=1)
    first, second = (adapter(lora(loras, "zimage", seed)) for seed in (1, 2))
    for spec in (first, second):
        assert same(draw(engine, "zimage", spec), direct(model_cache, "zimage", spec))
    assert engine.pipeline("easel/tiny-zimage").get_list_adapters()["transformer"] == ["slot_0"]
    wide = adapter(lora(loras, "zimage", 3, rank=8))
    with pytest.raises(InferenceError, match=r"of rank 8; .* lora_max_rank setting, 4"):
        draw(engine, "zimage", wide)
    assert engine.loaded_adapters("easel/tiny-zimage") == [second.name]  # its slot kept
    assert same(draw(engine, "zimage", second), direct(model_cache, "zimage", second))


def test_a_file_that_does_not_load_fails_the_batch_and_leaves_the_pipeline_clean(
    engine: Engine, loras: Path
) -> None:
    base = draw(engine, "qwenimage")
    broken = pickled_lora(loras / "broken.safetensors")
    wrong = adapter(wrong_base_lora(loras / "zimage-for-qwen.safetensors", made_for="zimage"))
    for spec in (adapter(broken), wrong):
        with pytest.raises(InferenceError, match=f"adapter {spec.name} did not load"):
            draw(engine, "qwenimage", spec)
    assert np.array_equal(draw(engine, "qwenimage"), base)


def test_text_encoder_adapters_under_hot_swap_reload_their_slot(
    model_cache: Path, loras: Path
) -> None:
    """diffusers cannot hot-swap a text encoder's LoRA: the slot is reloaded instead."""
    engine = fresh_engine(model_cache, lora_hotswap=True, lora_max_rank=8, lora_cache_count=1)
    for seed in (3, 4, 3):
        spec = adapter(lora(loras, "flux", seed, text_encoder=True))
        assert same(draw(engine, "flux", spec), direct(model_cache, "flux", spec))
    held = engine.pipeline("easel/tiny-flux").get_list_adapters()
    assert held == {"transformer": ["slot_0"], "text_encoder": ["slot_0"]}
