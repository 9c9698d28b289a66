from __future__ import annotations

import numpy as np
from examples.mini import data


def test_generation_is_deterministic() -> None:
    a, b = data.generate(7, 3), data.generate(7, 3)
    assert a.scene == b.scene
    assert np.array_equal(a.image, b.image)
    assert a.image.shape == (256, 256, 3) and a.image.dtype == np.uint8
    assert not np.array_equal(a.image, data.generate(7, 4).image)
    assert data.render(a.scene, 64).shape == (64, 64, 3)


def test_ground_truth_matches_pixels() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        scene = data.sample_scene(rng, kind="single")
        obj = scene.objects[0]
        img = data.render(scene, 128).astype(np.float32)
        mask = data.object_mask(obj, 128)
        ys, xs = np.nonzero(mask)
        assert abs((xs.mean() + 0.5) / 128 - obj.cx) < 0.08
        assert abs((ys.mean() + 0.5) / 128 - obj.cy) < 0.08
        x0, y0, x1, y1 = obj.bbox
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        inner = mask & np.roll(mask, 2, 0) & np.roll(mask, -2, 0)
        median = np.median(img[inner], axis=0)
        # The object's pixels carry its colour (trees and houses add a darker shade).
        assert np.abs(median - np.array(data.COLOURS[obj.colour])).max() < 2
        assert obj.colour in scene.caption and obj.shape in scene.caption


def test_captions_name_counts_and_words() -> None:
    rng = np.random.default_rng(1)
    for _ in range(30):
        s = data.sample_scene(rng, kind="count")
        assert data.NUMBERS[s.count] in s.caption
        w = data.sample_scene(rng, kind="word")
        assert w.word is not None and f'"{w.word}"' in w.caption and len(w.word) <= 6


def test_heldout_combinations_never_in_training() -> None:
    rng = np.random.default_rng(2)
    for _ in range(1500):
        s = data.sample_scene(rng, "train")
        assert not any((o.colour, o.shape) in data.HELDOUT_PAIRS for o in s.objects)
        if s.word is not None:
            assert not data.heldout_word(s.word, s.background)
    prompts = data.heldout_prompts(200)
    assert len(prompts) == 200
    kinds = {s.kind for _, s in prompts}
    assert kinds == {"single", "count", "relation", "word"}
    for caption, s in prompts:
        assert caption == s.caption
        if s.kind == "word":
            assert s.word is not None and len(s.word) == 4
            assert data.heldout_word(s.word, s.background)
        else:
            assert any((o.colour, o.shape) in data.HELDOUT_PAIRS for o in s.objects)
    assert data.heldout_prompts(200) == prompts


def test_colours_stand_out_from_backgrounds() -> None:
    for bg in data.BACKGROUNDS:
        assert len(data.allowed_colours(bg)) >= 5
    assert "blue" not in data.allowed_colours("sea")
    assert "green" not in data.allowed_colours("grass")


def test_foreground_is_where_the_objects_are() -> None:
    from examples.mini import data

    scene = next(s for s in (data.sample_scene(data.scene_rng(3, i), "train", kind="single")
                             for i in range(50)) if s.objects[0].size == "big")
    picture = data.render(scene, 32)
    mask = data.foreground(scene, picture)
    assert mask.shape == (32, 32) and mask.dtype == bool
    ys, xs = np.nonzero(mask)
    obj = scene.objects[0]
    assert abs(xs.mean() / 32 - obj.cx) < 0.1 and abs(ys.mean() / 32 - obj.cy) < 0.1
    assert 0.02 < mask.mean() < obj.extent ** 2 * 1.5  # the object, not the background
    bare = data.Scene(scene.kind, scene.background, scene.caption)
    assert not data.foreground(bare, data.render(bare, 32)).any()


def test_the_training_split_of_the_judged_mix_uses_only_training_combinations() -> None:
    scenes = data.heldout_scenes(40, split="train")
    assert [s.kind for s in scenes] == [s.kind for s in data.heldout_scenes(40)]
    assert all((o.colour, o.shape) not in data.HELDOUT_PAIRS for s in scenes for o in s.objects)
    assert not any(data.heldout_word(s.word, s.background) for s in scenes if s.word)
