"""The catalog owns sizes, limits and prices; planning applies them."""

from __future__ import annotations

from pathlib import Path

import pytest

from easel.catalog import Catalog
from easel.domain.errors import EaselError, ErrorKind
from easel.domain.request import GenerationRequest
from easel.services.jobs.planning import BackendResolver, assign_seeds, plan

IMAGEN_1K = {(1024, 1024), (896, 1280), (1280, 896), (768, 1408), (1408, 768)}
ALL_IDS = {
    "imagen-4.0-upscale-preview",
    "easel/upscale",
    "runware:500@1",
    "runware:501@1",
    "runware:502@1",
    "runware:503@1",
    "runware:504@1",
    "google:2@1",
    "google:2@2",
    "google:2@3",
    "google/imagen4",
    "google/imagen4-fast",
    "google/imagen4-ultra",
    "wavespeed-ai/imagen4",
    "google/imagen4/preview",
    "google/imagen-4.0-generate-001",
    "google/imagen-4.0-fast-generate-001",
    "google/imagen-4.0-ultra-generate-001",
    "imagen-4.0-generate-001",
    "imagen-4.0-fast-generate-001",
    "imagen-4.0-ultra-generate-001",
    "imagen-4.0-generate-preview-06-06",
    "imagen-4.0-ultra-generate-preview-06-06",
    "google/imagen-4.0-generate-preview-06-06",
    "google/imagen-4.0-ultra-generate-preview-06-06",
    "gemini-2.5-flash-image",
    "gemini-3.1-flash-image",
    "gemini-3.1-flash-image-preview",
    "gemini-3-pro-image",
    "gemini-3-pro-image-preview",
    "google/nano-banana-edit",
    "google/gemini-2.5-flash-image-edit",
    "google/nano-banana-2",
    "google/gemini-3-1-flash-image-preview",
    "google/gemini-3-pro-image-edit",
    "google/gemini-2.5-flash-image/edit",
    "google/nano-banana-2/edit",
    "google/nano-banana-2/edit-fast",
    "google/nano-banana-pro/edit",
    "imagen-3.0-capability-001",
    "imagen-3.0-capability-002",
    "easel/mini",
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def test_every_provider_id_maps_to_its_tier(catalog: Catalog) -> None:
    assert set(catalog.models) == ALL_IDS
    tiers = {m.id: m.tier.name for m in catalog.models.values()}
    assert tiers["google:2@1"] == "standard" and tiers["google:2@2"] == "ultra"
    assert tiers["google:2@3"] == "fast" and tiers["google/imagen4-fast"] == "fast"
    assert tiers["imagen-4.0-ultra-generate-001"] == "ultra"
    assert tiers["imagen-3.0-capability-001"] == "standard"  # Z-Image: img2img and inpainting
    assert tiers["imagen-4.0-upscale-preview"] == tiers["runware:504@1"] == "upscale"
    assert {m.id for m in catalog.models.values() if m.upscales} == {
        "imagen-4.0-upscale-preview", "easel/upscale",
        *(f"runware:{n}@1" for n in range(500, 505))}
    assert (tiers["gemini-2.5-flash-image"], tiers["gemini-3.1-flash-image"],
            tiers["gemini-3-pro-image"]) == ("fast", "standard", "ultra")


def test_the_gemini_ids_take_googles_size_tables(catalog: Catalog) -> None:
    flash = catalog.model("gemini-2.5-flash-image")
    assert flash.size_for("21:9").width == 1536 and flash.size_for("2:3").height == 1248
    assert flash.resolutions == ("1k",) and flash.image_tokens == 1290
    wide = catalog.model("gemini-3.1-flash-image")
    assert len({s.aspect_ratio for s in wide.sizes}) == 14
    assert (wide.size_for("1:8").width, wide.size_for("1:8").height) == (352, 2816)
    assert wide.size_for("16:9", "2k").width == 2 * 1344
    assert all(s.width % 16 == 0 and s.height % 16 == 0 for s in wide.sizes)


def test_sizes_follow_the_imagen_table(catalog: Catalog) -> None:
    fast = catalog.model("google:2@3")
    assert {(s.width, s.height) for s in fast.sizes} == IMAGEN_1K
    ultra = catalog.model("google/imagen4-ultra")
    doubles = {(2 * w, 2 * h) for w, h in IMAGEN_1K}
    assert {(s.width, s.height) for s in ultra.sizes} == IMAGEN_1K | doubles
    assert ultra.size_for("16:9", "2k").width == 2816
    # Runware serves 1K only, even for tiers that have 2K elsewhere.
    assert all(s.resolution == "1k" for s in catalog.model("google:2@2").sizes)


def test_prices_and_limits(catalog: Catalog) -> None:
    prices = {t.name: t.price_usd for t in catalog.tiers.values()}
    assert prices == {"fast": 0.02, "standard": 0.04, "ultra": 0.06, "mini": 0.0,
                      "upscale": 0.003}
    assert catalog.model("google/imagen4/preview").prompt_max == 400
    assert catalog.model("google:2@1").max_images == 20
    assert catalog.model("google/imagen4").max_images == 4


def test_unknown_model_names_the_parameter_and_lists_the_known_ones(catalog: Catalog) -> None:
    with pytest.raises(EaselError) as info:
        catalog.model("google:9@9")
    assert info.value.kind is ErrorKind.UNKNOWN_MODEL
    assert info.value.parameter == "model"
    assert "google:2@3" in info.value.message


def test_size_not_in_the_catalog_is_refused_with_the_allowed_list(catalog: Catalog) -> None:
    with pytest.raises(EaselError) as info:
        catalog.model("google:2@3").check_size(1000, 1000)
    assert info.value.parameter == "size"
    assert "1408x768" in info.value.message
    assert "1408x768" in (info.value.allowed or [])
    with pytest.raises(EaselError, match="resolution"):
        catalog.model("google:2@3").size_for("1:1", "2k")


@pytest.mark.parametrize(
    ("change", "parameter"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 3001}, "prompt"),
        ({"num_images": 0}, "num_images"),
        ({"num_images": 21}, "num_images"),
        ({"seed": -1}, "seed"),
        ({"width": 512}, "size"),
    ],
)
def test_bad_requests_name_the_parameter(
    catalog: Catalog, change: dict[str, object], parameter: str
) -> None:
    fields: dict[str, object] = {
        "model": "google:2@3",
        "prompt": "a fox",
        "width": 1024,
        "height": 1024,
        **change,
    }
    with pytest.raises(EaselError) as info:
        plan(GenerationRequest(**fields), catalog, BackendResolver())  # type: ignore[arg-type]
    assert info.value.parameter == parameter


def test_negative_prompt_only_where_the_model_allows_it(catalog: Catalog) -> None:
    request = GenerationRequest("google:2@1", "a fox", 1024, 1024, negative_prompt="blur")
    with pytest.raises(EaselError) as info:
        plan(request, catalog, BackendResolver())
    assert info.value.kind is ErrorKind.UNSUPPORTED
    ultra = GenerationRequest("google/imagen4-ultra", "a fox", 1024, 1024, negative_prompt="blur")
    assert plan(ultra, catalog, BackendResolver()).images[0].negative_prompt == "blur"
    # The provider takes one for Imagen 4 Fast, but FLUX.2 [klein] is step-distilled (no CFG):
    # refused rather than silently dropped.
    fast = GenerationRequest("google:2@3", "a fox", 1024, 1024, negative_prompt="blur")
    with pytest.raises(EaselError, match="does not accept a negative_prompt"):
        plan(fast, catalog, BackendResolver())


def test_seeds_explicit_run_consecutively_and_random_ones_are_reported() -> None:
    assert assign_seeds(7, 3, 2**32 - 1) == [7, 8, 9]
    random_seeds = assign_seeds(None, 4, 2**32 - 1)
    assert len(random_seeds) == 4 and all(0 <= s < 2**32 for s in random_seeds)
    assert len(set(random_seeds)) > 1


def test_absent_weights_fall_back_to_the_tiny_model_of_the_same_family(catalog: Catalog) -> None:
    request = GenerationRequest("google:2@2", "a fox", 1024, 1024, num_images=2, seed=3)
    the_plan = plan(request, catalog, BackendResolver())
    assert the_plan.backend.source in ("easel/tiny-qwenimage", "easel/mini")
    assert the_plan.backend.is_stand_in
    assert "not present" in (the_plan.backend.stand_in_reason or "")
    assert the_plan.seeds == [3, 4]
    assert the_plan.cost_usd == pytest.approx(0.12)


def test_strict_refuses_a_stand_in(catalog: Catalog) -> None:
    request = GenerationRequest("google:2@3", "a fox", 1024, 1024)
    with pytest.raises(EaselError) as info:
        plan(request, catalog, BackendResolver(strict=True))
    assert info.value.kind is ErrorKind.UNAVAILABLE
    assert "easel pull" in info.value.message


def test_users_add_models_and_override_prices_without_code(tmp_path: Path) -> None:
    overlay = tmp_path / "mine.toml"
    overlay.write_text(
        "[tiers.fast]\nprice_usd = 0.01\n"
        '[backends.my-sdxl]\nsource = "/models/my-sdxl"\nfamily = "sdxl"\n'
        "steps = 25\nguidance = 6.0\n"
        '[tiers.house]\nbackend = "my-sdxl"\nprice_usd = 0.005\n'
        '[models."acme/house-style"]\ntier = "house"\nmax_images = 2\n'
    )
    catalog = Catalog.load(overlay)
    assert catalog.model("google:2@3").price_usd == 0.01
    house = catalog.model("acme/house-style")
    assert house.backend.source == "/models/my-sdxl" and house.backend.steps == 25
    assert house.max_images == 2


def test_easel_mini_is_registered_and_stands_in_for_itself_until_trained(catalog: Catalog) -> None:
    mini = catalog.model("easel/mini")
    assert mini.backend.source == "easel/mini" and mini.backend.family == "mini"
    resolver = BackendResolver(mini=catalog.mini)
    resolved = resolver.resolve(mini.backend)
    if resolver.present("easel/mini"):  # trained weights ship in the package
        assert not resolved.is_stand_in
        assert resolver.stand_in(catalog.model("google:2@3").backend) == "easel/mini"
    else:
        assert resolved.source == "easel/tiny-mini" and resolved.is_stand_in
        assert resolver.stand_in(catalog.model("google:2@3").backend) == "easel/tiny-flux2"


def test_trained_easel_mini_becomes_the_stand_in_for_every_tier(catalog: Catalog) -> None:
    class MiniPresent(BackendResolver):
        def present(self, source: str) -> bool:
            return source == "easel/mini"

    resolver = MiniPresent(mini=catalog.mini)
    for model_id in ("google:2@3", "google:2@1", "imagen-4.0-ultra-generate-001"):
        resolved = resolver.resolve(catalog.model(model_id).backend)
        assert resolved.source == "easel/mini" and resolved.family == "mini"
        assert resolved.steps == catalog.backends["mini"].steps  # mini's own schedule
        assert "easel-mini" in (resolved.stand_in_reason or "")


def test_seeds_wrap_within_the_dialects_range_so_each_is_a_valid_input() -> None:
    assert assign_seeds(2**32 - 1, 3, 2**32 - 1) == [2**32 - 1, 0, 1]
    assert assign_seeds(9999999999, 2, 9999999999) == [9999999999, 0]
    assert all(0 <= s <= 9 for s in assign_seeds(None, 50, 9))


def test_sampling_controls_are_bounded_per_backend_and_split_batches(catalog: Catalog) -> None:
    from easel.services.jobs.service import batch_key

    resolver = BackendResolver(stand_in_max_steps=4)
    ultra = GenerationRequest(model="google:2@2", prompt="a fox", width=1024, height=1024)
    tuned = GenerationRequest(model="google:2@2", prompt="a fox", width=1024, height=1024,
                              steps=2, guidance_scale=7.5,
                              scheduler="FlowMatchEulerDiscreteScheduler")
    base, chosen = plan(ultra, catalog, resolver), plan(tuned, catalog, resolver)
    assert (chosen.backend.steps, chosen.backend.guidance) == (2, 7.5)
    assert chosen.backend.scheduler is not None
    assert chosen.backend.scheduler.class_name == "FlowMatchEulerDiscreteScheduler"
    assert chosen.batch().scheduler == chosen.backend.scheduler
    assert batch_key(base) != batch_key(chosen)
    for change, words in (({"steps": 1}, "2..100"), ({"guidance_scale": 21.0}, "1..20"),
                          ({"scheduler": "DDIM"}, "allowed: Default, FlowMatch")):
        bad = GenerationRequest(model="google:2@2", prompt="a fox", width=1024, height=1024,
                                **change)  # type: ignore[arg-type]
        with pytest.raises(EaselError, match=words):
            plan(bad, catalog, resolver)
    schnell = GenerationRequest(model="google:2@3", prompt="a fox", width=1024, height=1024,
                                guidance_scale=1.0)
    with pytest.raises(EaselError) as refused:
        plan(schnell, catalog, resolver)
    assert refused.value.kind is ErrorKind.UNSUPPORTED
    assert "guidance-distilled" in str(refused.value)


def test_pointing_a_backend_at_other_weights_forgets_the_old_licence(tmp_path: Path) -> None:
    overlay = tmp_path / "mine.toml"
    overlay.write_text('[backends.z-image-turbo]\nsource = "someone/z-image-finetune"\n')
    backend = Catalog.load(overlay).backends["z-image-turbo"]
    assert backend.license.id == "unknown" and not backend.license.commercial
    resolver = BackendResolver(commercial_only=True)
    assert "does not allow commercial use" in (resolver.refusal(backend) or "")
    kept = tmp_path / "kept.toml"
    kept.write_text('[backends.z-image-turbo]\nsteps = 6\n')
    assert Catalog.load(kept).backends["z-image-turbo"].license.id == "apache-2.0"


def test_a_tier_beyond_native_on_a_family_without_img2img_is_refused_at_load(
    tmp_path: Path
) -> None:
    overlay = tmp_path / "klein-2k.toml"
    overlay.write_text('[tiers.fast]\nresolutions = ["1k", "2k"]\n')
    with pytest.raises(ValueError, match="no img2img pipeline"):
        Catalog.load(overlay)


def test_refinable_families_are_those_with_an_img2img_class() -> None:
    from easel.catalog import REFINABLE_FAMILIES
    from easel.engine.families import FAMILIES

    # easel-mini draws at its own small size and resizes: no size needs a second pass.
    assert set(REFINABLE_FAMILIES) == {n for n, f in FAMILIES.items() if f.refiner} - {"mini"}


def test_commercial_only_refuses_conditional_licences_until_the_operator_says_so(
    tmp_path: Path,
) -> None:
    sd35 = Catalog.load().backends["sd35-large"]
    assert BackendResolver(commercial_only=True).refusal(sd35) is not None
    overlay = tmp_path / "qualify.toml"
    overlay.write_text('[licenses."stabilityai-community"]\ncommercial = true\n')
    cleared = Catalog.load(overlay).backends["sd35-large"]
    assert BackendResolver(commercial_only=True).refusal(cleared) is None


def test_a_stand_in_never_runs_below_the_models_minimum_steps(catalog: Catalog) -> None:
    resolver = BackendResolver(stand_in_max_steps=1)
    ultra = GenerationRequest("google/imagen4-ultra", "a fox", 1024, 1024)
    assert plan(ultra, catalog, resolver).backend.steps == 2  # Qwen-Image: min_steps 2
    asked = GenerationRequest("google/imagen4-ultra", "a fox", 1024, 1024, steps=3)
    assert plan(asked, catalog, resolver).backend.steps == 2  # capped at 1, raised to 2


def test_the_catalogs_input_operations_are_the_engines() -> None:
    """The core refuses an operation a family cannot do before a job exists: its table must be
    the engine's (an img2img class for "image", an inpaint class for "inpaint")."""
    from easel.catalog import INPUT_OPERATIONS
    from easel.engine.families import FAMILIES

    engine = {name: tuple(op for op, cls in (("image", family.refiner),
                                             ("inpaint", family.inpainter),
                                             ("reference", family.references)) if cls)
              for name, family in FAMILIES.items()}
    # The upscalers are transformers models the engine loads by their model type.
    from easel.catalog import UPSCALER_FAMILIES
    from easel.engine.upscaler import UPSCALER_MODEL_TYPES

    assert set(UPSCALER_FAMILIES) == set(UPSCALER_MODEL_TYPES)
    engine |= {name: ("upscale",) for name in UPSCALER_FAMILIES}
    assert engine == INPUT_OPERATIONS
