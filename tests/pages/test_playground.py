"""The playground page in a real browser: Debian's chromium, headless, driven by Playwright.

Each test does what a user does (type, click, wait for what the page shows) against a real
server with tiny stand-ins, and saves screenshots of the states it reaches (EASEL_TEST_ARTIFACTS,
default /tmp/easel-test-artifacts) so a person can look at them."""

from __future__ import annotations

import io
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from easel.settings import Settings
from tests.core.test_loras import PRESENT, allow
from tests.pages.browser import ARTIFACTS
from tests.sdk_venvs import sdk_python
from tests.server_harness import SMALL_SIZES, Server

FAST_STEPS = 120  # Fast runs long enough for several progress events
SLOW_STEPS = 4000  # Standard runs for a minute: there is time to cancel it
FAST = "google/imagen4-fast"
STANDARD = "imagen-4.0-generate-001"
ULTRA = "imagen-4.0-ultra-generate-001"  # four steps here: quick jobs (it takes negatives)
SDK_OF_TAB = {"runware": "runware-sdk", "wavespeed": "wavespeed", "aiml": "openai",
              "google": "google-genai-3", "gemini": "google-genai-3"}


def catalog(path: Path) -> Path:
    path.write_text(SMALL_SIZES + f"\n[backends.flux2-klein-4b]\nsteps = {FAST_STEPS}\n"
                    f"\n[backends.z-image-turbo]\nsteps = {SLOW_STEPS}\n"
                    "\n[backends.qwen-image]\nsteps = 4\n")
    return path


def start_server(root: Path, **env: Any) -> Server:
    root.mkdir(parents=True, exist_ok=True)
    # The fake engine's steps take a fiftieth of a second: a job's progress shows, and the
    # Standard job runs long enough to be cancelled.
    return Server(root / "srv", small=False, step_seconds=0.02,
                  EASEL_CATALOG_FILE=catalog(root / "catalog.toml"), EASEL_STAND_IN="tiny",
                  EASEL_STAND_IN_MAX_STEPS=SLOW_STEPS, **env).start()


KEY = "page-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the page tests, with API keys on (as a shared server would run)."""
    srv = start_server(tmp_path_factory.mktemp("page"), EASEL_API_KEYS=KEY)
    yield srv
    srv.stop()


def opened_page(browser: Any, server: Server) -> Iterator[Any]:
    """A page of `server` in a browser where the key was typed before (it is in the browser's
    storage; the key dialog is the last test's subject); no uncaught exception in its script."""
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    context.add_init_script(f"localStorage.setItem('easel.apiKey', {KEY!r})")
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert not errors, errors


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    yield from opened_page(browser, server)


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"playground-{name}.png"), full_page=True)


def open_playground(page: Any, srv: Server) -> None:
    page.goto(srv.url + "/")
    page.wait_for_selector("#model option", state="attached")


def record_progress(page: Any) -> None:
    """Keep every text the job's progress line shows, as the page changes it."""
    page.evaluate("""() => {
        window.seenProgress = [];
        new MutationObserver(() => {
            for (const line of document.querySelectorAll('.job-progress')) {
                const text = line.textContent;
                if (window.seenProgress.at(-1) !== text) window.seenProgress.push(text);
            }
        }).observe(document.body, {subtree: true, childList: true, characterData: true});
    }""")


def generate(page: Any, model: str, prompt: str, **fields: str) -> str:
    page.select_option("#model", model)
    page.fill("#prompt", prompt)
    for name, value in fields.items():
        page.fill(f"#{name}", value)
    page.click("#generate")
    card = page.wait_for_selector(".job[data-job-id]")
    return str(card.get_attribute("data-job-id"))


def test_generate_shows_live_progress_then_images_to_enlarge_download_and_reuse(
    page: Any, server: Server, tmp_path: Path
) -> None:
    open_playground(page, server)
    notice = page.locator("#notice")
    assert notice.is_visible() and "stand-in" in notice.inner_text()
    assert "Apache License 2.0" in page.locator(".tier-card").first.inner_text()  # the licence
    record_progress(page)
    page.check("#seed_lock")
    job_id = generate(page, FAST, "a red fox in snow", seed="7", num_images="2")
    page.wait_for_selector(".job .percent >> text=/step \\d+ of/")
    shot(page, "progress")
    page.wait_for_selector(".job[data-status=completed]", timeout=120_000)
    shot(page, "completed")
    seen = page.evaluate("window.seenProgress")
    steps = [int(text.split()[1]) for text in seen if text.startswith("step ")]
    assert len(steps) >= 2 and steps == sorted(steps) and 0 < steps[0] < FAST_STEPS, seen
    assert seen[-1] == f"{FAST_STEPS} of {FAST_STEPS} steps · 100%"
    images = page.locator(".job .frame img")
    assert images.count() == 2
    assert page.evaluate("[...document.querySelectorAll('.frame img')]"
                         ".every((i) => i.complete && i.naturalWidth === 64)")
    seeds = page.locator(".job .seed").all_inner_texts()
    assert [s.split(" · ")[0] for s in seeds] == ["seed 7", "seed 8"]
    assert all("kept until" in s for s in seeds)

    with page.expect_download() as download:
        page.locator(".job .download").first.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "easel-7.jpg"
    with Image.open(io.BytesIO(saved.read_bytes())) as image:
        assert (image.format, image.size) == ("JPEG", (64, 64))

    page.locator(".job .copy-seed").nth(1).click()
    assert page.evaluate("navigator.clipboard.readText()") == "8"

    images.first.click()
    assert page.locator("#lightbox").is_visible()
    shot(page, "enlarged")
    page.click("#lightbox-close")

    page.fill("#prompt", "something else")
    page.select_option("#model", STANDARD)
    page.click(".job .reuse")
    assert page.input_value("#prompt") == "a red fox in snow"
    assert page.input_value("#model") == FAST and page.input_value("#seed") == "7"
    job = httpx.get(f"{server.url}/easel/jobs/{job_id}", headers=AUTH, timeout=30).json()
    assert job["seeds"] == [7, 8] and job["status"] == "completed"


def test_the_history_survives_a_reload(page: Any, server: Server) -> None:
    # Opened as localhost, while image URLs name 127.0.0.1: the page loads them from its own
    # origin, as its Content-Security-Policy requires.
    page.goto(server.url.replace("127.0.0.1", "localhost") + "/")
    page.wait_for_selector("#model option", state="attached")
    page.select_option("#safety_setting", "block_medium_and_above")
    page.check("#watermark")
    job_id = generate(page, ULTRA, "a lighthouse at dusk")
    page.wait_for_selector(f".job[data-job-id='{job_id}'][data-status=completed] img",
                           timeout=120_000)
    job = httpx.get(f"{server.url}/easel/jobs/{job_id}", headers=AUTH).json()
    assert job["safety"] == {"level": "block_medium_and_above", "on_flagged": "withhold",
                             "person_generation": "allow_all", "watermark": True}
    assert job["outputs"][0]["scores"] is not None  # checked, and not flagged: shown
    page.reload()
    card = page.wait_for_selector(f".job[data-job-id='{job_id}'][data-status=completed]")
    assert "a lighthouse at dusk" in card.inner_text()
    page.wait_for_function("document.querySelector('.frame img')?.naturalWidth === 64")
    assert page.input_value("#prompt") == "a lighthouse at dusk"  # the form came back too
    assert page.input_value("#safety_setting") == "block_medium_and_above"
    assert page.is_checked("#watermark")
    shot(page, "after-reload")


def test_cancel_stops_a_running_job(page: Any, server: Server) -> None:
    open_playground(page, server)
    job_id = generate(page, STANDARD, "a very long job")
    card = page.locator(f".job[data-job-id='{job_id}']")
    card.locator(".percent >> text=/step \\d+ of/").wait_for(timeout=120_000)
    card.locator(".cancel").click()
    page.wait_for_selector(f".job[data-job-id='{job_id}'][data-status=cancelled]",
                           timeout=60_000)
    shot(page, "cancelled")
    assert "stopped at step" in card.locator(".job-progress").inner_text()
    assert not card.locator(".cancel").is_visible()
    job = httpx.get(f"{server.url}/easel/jobs/{job_id}", headers=AUTH, timeout=30).json()
    assert job["status"] == "cancelled" and 0 < job["progress"]["step"] < SLOW_STEPS


def test_server_errors_appear_beside_the_field_they_concern(page: Any, server: Server) -> None:
    open_playground(page, server)
    page.select_option("#model", FAST)
    page.fill("#prompt", "a fox")
    page.fill("#num_images", "9")
    page.click("#generate")
    error = page.locator(".field-error[data-for=num_images]")
    error.wait_for()
    assert "a whole number from 1 to 4" in error.inner_text()  # the page knows the model's limit
    assert "invalid" in (page.get_attribute("#num_images", "class") or "")
    shot(page, "validation-error")
    page.fill("#num_images", "1")
    page.fill("#prompt", "")
    page.click("#generate")
    page.locator(".field-error[data-for=prompt]").wait_for()  # the server's refusal, beside it
    assert page.locator(".field-error[data-for=num_images]").inner_text() == ""
    assert page.locator(".job").count() == 0  # nothing was queued


def test_each_dialects_code_runs_as_printed(page: Any, server: Server) -> None:
    """The request shown as code for each dialect, copied from the page and run: the same
    generation through each official SDK, and through curl."""
    open_playground(page, server)
    page.select_option("#model", ULTRA)
    page.fill("#negative_prompt", "blurry, low quality")
    job_id = generate(page, ULTRA, 'a "red" fox\nin snow, 雪', seed="5")
    card = f".job[data-job-id='{job_id}']"
    page.click(f"{card} details summary")
    # Opened, whatever repaint raced the click on a loaded machine (what is tested here is the
    # code the tabs show).
    page.locator(f"{card} details").evaluate("details => { details.open = true; }")
    page.wait_for_selector(f"{card} details[open] .tabs button")
    codes = {}
    for tab in page.locator(f"{card} .tabs button").all():
        tab.click()
        codes[tab.get_attribute("data-dialect")] = page.locator(f"{card} .snippet").inner_text()
    assert set(codes) == {"curl", *SDK_OF_TAB}
    env = {**os.environ, "EASEL_API_KEY": KEY}
    for dialect, sdk in SDK_OF_TAB.items():
        run = subprocess.run([str(sdk_python(sdk)), "-c", codes[dialect]], capture_output=True,
                             text=True, timeout=300, env=env)
        assert run.returncode == 0, (dialect, codes[dialect], run.stdout + run.stderr)
        assert run.stdout.strip(), dialect
    assert "<id>" not in codes["curl"]  # the whole snippet runs as printed, no blank to fill
    streamed = subprocess.run(["bash", "-euo", "pipefail", "-c", codes["curl"]],
                              capture_output=True, text=True, timeout=120, env=env)
    assert "event: end" in streamed.stdout and '"status": "completed"' in streamed.stdout, (
        streamed.stdout[-2000:] + streamed.stderr)


def test_an_image_count_the_model_does_not_take_is_caught_on_the_page(
    page: Any, server: Server
) -> None:
    """No price for 999 images, and no request the server would answer "got 0" to."""
    open_playground(page, server)
    page.select_option("#model", ULTRA)
    for typed in ("999", ""):
        page.fill("#num_images", typed)
        assert "draws 1 to" in page.locator("#size-line").inner_text()
        assert "$" not in page.locator("#size-line").inner_text()
    page.fill("#prompt", "a fox")
    jobs_before = page.locator(".job").count()
    page.click("#generate")
    error = page.locator('.field-error[data-for="num_images"]')
    error.wait_for()
    assert "a whole number from 1 to" in error.inner_text()
    assert page.locator(".job").count() == jobs_before  # nothing was sent


def test_the_model_picker_names_each_tier_and_picks_its_ids(page: Any, server: Server) -> None:
    """Named cards, one per tier (what draws it, licence, the hosted API's price, a stand-in
    badge), instead of 19 raw ids; choosing one picks that tier's ids, whole in the select."""
    open_playground(page, server)
    cards = page.locator(".tier-card")
    assert cards.count() == 5  # fast, standard, ultra, mini, upscale
    ultra = page.locator(".tier-card[data-tier=ultra]")
    text = ultra.inner_text()
    assert "Imagen 4 Ultra" in text and "hosted price $0.060/image" in text
    assert "stand-in: easel/tiny-qwenimage" in text and "Apache License 2.0" in text
    ultra.click()
    assert page.locator(".tier-card.chosen").get_attribute("data-tier") == "ultra"
    chosen_id = page.locator("#model").input_value()
    assert "ultra" in chosen_id
    options = page.locator("#model option").all_inner_texts()
    assert "google/imagen-4.0-ultra-generate-preview-06-06" in options  # never cut
    page.select_option("#model", FAST)
    assert page.locator(".tier-card.chosen").get_attribute("data-tier") == "fast"


def test_a_job_says_how_long_it_took_and_opens_full_size(page: Any, server: Server) -> None:
    """Ctrl+Enter generates; the finished card says how long it ran and waited; an image opens
    full size (its own pixels, not the tile's)."""
    open_playground(page, server)
    page.locator(".chip").first.click()  # an example prompt fills the box
    assert page.input_value("#prompt") == "a red circle on a white background"
    page.select_option("#model", ULTRA)
    page.focus("#prompt")
    page.keyboard.press("Control+Enter")
    card = page.wait_for_selector(".job[data-job-id]")
    job_id = card.get_attribute("data-job-id")
    done = f".job[data-job-id='{job_id}'][data-status=completed]"
    page.wait_for_selector(f"{done} img", timeout=120_000)
    timing = page.locator(f"{done} .job-timing").inner_text()
    assert re.fullmatch(r"Generated in \d+\.\d s · waited \d+\.\d s in the queue", timing), timing
    page.click(f"{done} img")
    lightbox = page.locator("#lightbox")
    lightbox.wait_for(state="visible")
    width = page.evaluate("document.querySelector('#lightbox-image').naturalWidth")
    job = httpx.get(f"{server.url}/easel/jobs/{job_id}", headers=AUTH).json()
    assert width == job["width"]
    page.click("#lightbox-close")


@pytest.mark.parametrize("width", [1280, 390])
def test_screenshots_of_the_playground(browser: Any, server: Server, width: int) -> None:
    """The page at a desktop's and a phone's width, with a finished job, for a person to look
    at (docs/images/playground-*.png are these)."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.add_init_script(f"localStorage.setItem('easel.apiKey', {KEY!r})")
    try:
        page = context.new_page()
        open_playground(page, server)
        # easel-mini draws it (its shipped weights): what a newcomer without weights sees.
        job_id = generate(page, "easel/mini", "a red circle on a white background", seed="7")
        page.wait_for_selector(f".job[data-job-id='{job_id}'][data-status=completed] img",
                               timeout=120_000)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a {width}px screen"
        shot(page, f"{width}")
    finally:
        context.close()


def test_each_image_says_until_when_it_is_kept_and_expires_plainly(
    page: Any, server: Server
) -> None:
    """Images live an hour by default: each tile says until when; past it (the page's clock
    moved two hours on) the tile says expired and offers no dead download link."""
    page.clock.install()
    open_playground(page, server)
    job_id = generate(page, ULTRA, "a fox that will expire")
    card = f".job[data-job-id='{job_id}']"
    page.wait_for_selector(f"{card}[data-status=completed] img", timeout=120_000)
    assert "kept until" in page.locator(f"{card} .seed").first.inner_text()
    assert page.locator(f"{card} .download").first.is_visible()
    page.clock.fast_forward("02:00:00")
    page.reload()
    page.wait_for_selector(f"{card} .seed >> text=expired")
    assert page.locator(f"{card} .percent").first.inner_text() == "expired"
    assert not page.locator(f"{card} .download").first.is_visible()


def test_the_page_says_when_the_server_is_gone_and_when_it_is_back(
    browser: Any, tmp_path: Path
) -> None:
    """kill -9 of the server while a job runs: the page says the server does not answer
    (instead of a card "processing" for ever); once it is back, the notice goes and the job
    is followed again."""
    # A short lease: the killed worker's job is taken back (and its cancel seen) in seconds.
    srv = start_server(tmp_path, EASEL_API_KEYS=KEY, EASEL_LEASE_SECONDS=2)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(f"localStorage.setItem('easel.apiKey', {KEY!r})")
    try:
        page = context.new_page()
        open_playground(page, srv)
        job_id = generate(page, STANDARD, "a job across a crash")
        page.wait_for_selector(f".job[data-job-id='{job_id}'][data-status=processing]")
        srv.kill()
        banner = page.locator("#connection")
        banner.wait_for(state="visible", timeout=30_000)
        assert "The server does not answer" in banner.inner_text()
        shot(page, "server-gone")
        srv.start()
        banner.wait_for(state="hidden", timeout=60_000)  # the page found it again by itself
        httpx.post(f"{srv.url}/easel/jobs/{job_id}/cancel", headers=AUTH, timeout=30)
        page.wait_for_selector(f".job[data-job-id='{job_id}'][data-status=cancelled]",
                               timeout=60_000)
    finally:
        context.close()
        srv.stop()


def test_with_api_keys_the_page_asks_for_one_and_keeps_it(browser: Any, server: Server) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # no key stored
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        dialog = page.locator("#key-dialog")
        dialog.wait_for()
        shot(page, "key-dialog")
        page.fill("#api-key", "wrong-key")
        page.click("#key-save")
        page.wait_for_selector("#key-reason >> text=was refused")
        page.fill("#api-key", KEY)
        page.click("#key-save")
        page.wait_for_selector("#model option", state="attached")
        job_id = generate(page, ULTRA, "a fox with a key")
        page.wait_for_selector(f".job[data-job-id='{job_id}'][data-status=completed] img",
                               timeout=120_000)
        assert page.evaluate("localStorage.getItem('easel.apiKey')") == KEY
        page.reload()  # the key is remembered: no dialog this time
        page.wait_for_selector(f".job[data-job-id='{job_id}'][data-status=completed] img")
        assert not dialog.is_visible()
    finally:
        context.close()


def test_a_queued_job_says_where_it_stands_and_moves_up(page: Any, server: Server) -> None:
    """Three jobs queued behind a long one: the last card says 2 jobs ahead, then 1, then
    next, then runs (the server's fair order, from its event stream)."""
    open_playground(page, server)
    blocker = httpx.post(f"{server.url}/easel/jobs", headers=AUTH, timeout=30,
                         json={"model": STANDARD, "prompt": "a long job ahead"}).json()["id"]
    wait_running(server, blocker)
    before = page.locator(".job[data-job-id]").count()  # the page lists its own jobs only
    ids: list[str] = []
    for ratio in ("1:1", "3:4", "4:3"):  # three sizes: three engine calls, one at a time
        page.select_option("#model", FAST)
        page.select_option("#aspect_ratio", ratio)
        page.fill("#prompt", f"queued at {ratio}")
        page.click("#generate")
        page.wait_for_function("n => document.querySelectorAll('.job[data-job-id]').length "
                               "=== n", arg=before + len(ids) + 1)
        ids.append(next(card.get_attribute("data-job-id")
                        for card in page.query_selector_all(".job[data-job-id]")
                        if card.get_attribute("data-job-id") not in (*ids, blocker)))
    last = f".job[data-job-id='{ids[2]}'] .job-progress"
    page.evaluate("""selector => {
        window.seenPlaces = [];
        new MutationObserver(() => {
            const text = document.querySelector(selector)?.textContent || "";
            if (window.seenPlaces.at(-1) !== text) window.seenPlaces.push(text);
        }).observe(document.body, {subtree: true, childList: true, characterData: true});
    }""", last)
    page.locator(last).filter(has_text="2 jobs ahead").wait_for(timeout=60_000)
    shot(page, "queue-position")
    httpx.post(f"{server.url}/easel/jobs/{blocker}/cancel", headers=AUTH, timeout=30)
    page.wait_for_selector(f".job[data-job-id='{ids[2]}'][data-status=completed]",
                           timeout=120_000)
    seen = page.evaluate("window.seenPlaces")
    places = [re.sub(r" · about .*", "", text) for text in seen if text.startswith("queued ·")]
    moves = [p for i, p in enumerate(places) if i == 0 or places[i - 1] != p]
    assert moves == ["queued · 2 jobs ahead", "queued · 1 job ahead",
                     "queued · next in the queue"], seen


def wait_running(srv: Server, job_id: str) -> None:
    """Until the job is in the engine (its events stream says so)."""
    with httpx.stream("GET", f"{srv.url}/easel/jobs/{job_id}/events", headers=AUTH,
                      timeout=60) as events:
        for line in events.iter_lines():
            if line.startswith("data:") and '"status": "processing"' in line:
                return
    raise AssertionError(f"job {job_id} never ran")


# -- LoRA adapters ----------------------------------------------------------------------------

LORA_FAST = "google/imagen-4.0-fast-generate-001"  # the first id: the tier the page picks


@pytest.fixture(scope="module")
def lora_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose Fast and Standard backends have their (tiny) weights present, as
    adapters need, with two adapters allow-listed for Fast's backend (flux2-klein-4b) as
    `easel lora add` would; Ultra stays on a stand-in, with none."""
    root = tmp_path_factory.mktemp("loras")
    catalog_file = root / "present.toml"
    catalog_file.write_text(PRESENT)
    srv = Server(root / "srv", small=False, EASEL_CATALOG_FILE=catalog_file,
                 EASEL_API_KEYS=KEY).start()
    settings = Settings(data_dir=srv.data_dir, catalog_file=catalog_file)
    allow(settings, "ink", scale=0.75, aliases=("civitai:132942@146296",),
          trigger="inkwash style", license="CC-BY-4.0")
    allow(settings, "oil", content=2.0)
    yield srv
    srv.stop()


@pytest.fixture
def lora_page(browser: Any, lora_server: Server) -> Iterator[Any]:
    yield from opened_page(browser, lora_server)


def adapter_row(page: Any, name: str) -> Any:
    return page.locator(f"#lora-list .lora[data-lora='{name}']")


def test_the_tiers_adapters_are_offered_sent_shown_on_the_card_and_in_the_code(
    lora_page: Any, lora_server: Server
) -> None:
    page = lora_page
    open_playground(page, lora_server)
    assert page.input_value("#model") == LORA_FAST
    page.locator("#loras").wait_for()
    assert page.locator("#lora-list .lora").count() == 2
    ink, oil = adapter_row(page, "ink"), adapter_row(page, "oil")
    facts = ink.locator(".lora-facts").inner_text()
    assert "for flux2-klein-4b" in facts and "licence: CC-BY-4.0" in facts
    assert "trigger words: inkwash style (a prompt should carry them)" in facts
    assert "also named civitai:132942@146296" in facts
    assert "licence not declared" in oil.inner_text()
    assert ink.locator(".lora-weight").input_value() == "0.75"  # its default weight
    assert oil.locator(".lora-weight").input_value() == "1"

    ink.locator(".lora-use").check()
    ink.locator(".lora-weight").fill("0.6")
    page.fill("#prompt", "a fox, inkwash style")
    page.click("#generate")
    card = page.wait_for_selector(".job[data-job-id][data-status=completed]", timeout=120_000)
    job_id = card.get_attribute("data-job-id")
    job = httpx.get(f"{lora_server.url}/easel/jobs/{job_id}", headers=AUTH, timeout=30).json()
    assert [(lora["name"], lora["weight"]) for lora in job["loras"]] == [("ink", 0.6)]
    sent = page.evaluate("JSON.parse(localStorage.getItem('easel.history'))[0].request.loras")
    assert sent == [{"name": "ink", "weight": 0.6}]  # only the checked one
    card_loras = page.locator(f".job[data-job-id='{job_id}'] .job-loras").inner_text()
    assert card_loras == "LoRA: ink × 0.6"
    shot(page, "loras")

    codes = card_codes(page, f".job[data-job-id='{job_id}']")
    assert '"loras": [\n    {\n      "name": "ink",\n      "weight": 0.6' in codes["curl"]
    assert '"loras": [\n            {\n                "name": "ink",' in codes["aiml"]
    assert '"lora": [\n            {\n                "model": "ink",' in codes["runware"]
    for dialect in ("wavespeed", "google", "gemini"):
        assert "Adapters are not sent through the" in codes[dialect]
        assert "without ink × 0.6" in codes[dialect]
    copied = f".job[data-job-id='{job_id}']"
    page.click(f"{copied} .tabs button[data-dialect=aiml]")
    page.click(f"{copied} .copy-code")
    assert page.evaluate("navigator.clipboard.readText()") == codes["aiml"]
    # The Runware and OpenAI snippets run as printed: the server takes their adapters.
    env = {**os.environ, "EASEL_API_KEY": KEY}
    for dialect in ("runware", "aiml"):
        run = subprocess.run([str(sdk_python(SDK_OF_TAB[dialect])), "-c", codes[dialect]],
                             capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, (dialect, codes[dialect], run.stdout + run.stderr)

    ink.locator(".lora-use").uncheck()
    page.click(f"{copied} .reuse")  # the job's adapters come back with its other settings
    assert ink.locator(".lora-use").is_checked()
    assert ink.locator(".lora-weight").input_value() == "0.6"

    page.reload()  # the choices are remembered, per adapter
    page.locator("#loras").wait_for()
    assert adapter_row(page, "ink").locator(".lora-use").is_checked()
    assert adapter_row(page, "ink").locator(".lora-weight").input_value() == "0.6"
    assert not adapter_row(page, "oil").locator(".lora-use").is_checked()


def card_codes(page: Any, card: str) -> dict[str, str]:
    """Each dialect's snippet, as the card's tabs show it."""
    page.locator(f"{card} details").evaluate("details => { details.open = true; }")
    codes = {}
    for tab in page.locator(f"{card} .tabs button").all():
        tab.click()
        codes[str(tab.get_attribute("data-dialect"))] = page.locator(
            f"{card} .snippet").inner_text()
    return codes


def test_an_adapter_the_server_refuses_is_said_beside_the_adapters(
    lora_page: Any, lora_server: Server
) -> None:
    page = lora_page
    open_playground(page, lora_server)
    page.locator("#loras").wait_for()
    oil = adapter_row(page, "oil")
    oil.locator(".lora-use").check()
    oil.locator(".lora-weight").fill("9")
    page.fill("#prompt", "a fox")
    page.click("#generate")
    error = page.locator(".field-error[data-for=loras]")
    error.wait_for()
    assert "loras[0]: weight must be a number -4..4, got 9" in error.inner_text()
    assert "invalid" in (oil.locator(".lora-weight").get_attribute("class") or "")
    shot(page, "lora-error")
    assert page.locator(".job").count() == 0  # nothing was queued


def test_a_tier_without_adapters_says_so_and_how_they_are_added(
    lora_page: Any, lora_server: Server
) -> None:
    page = lora_page
    open_playground(page, lora_server)
    page.locator("#loras").wait_for()
    page.select_option("#model", ULTRA)
    none = page.locator("#lora-none")
    none.wait_for()
    assert not page.locator("#loras").is_visible()
    text = none.inner_text()
    assert "none is allow-listed for qwen-image" in text and "easel lora add" in text
    shot(page, "lora-none")
    page.locator(".tier-card[data-tier=fast]").click()  # back: the rows again
    page.locator("#loras").wait_for()
    assert none.is_hidden() and page.locator("#lora-list .lora").count() == 2
    assert "loras" not in page.evaluate("formRequest()")  # none checked: none sent


def start_from_image(page: Any, server: Server, folder: Path, prompt: str) -> None:
    """The playground on Ultra with `prompt` and a 96x64 photo.png (written to `folder`, where
    the edit's code reads it) chosen as the image to start from."""
    photo = folder / "photo.png"
    Image.new("RGB", (96, 64), (40, 120, 200)).save(photo)
    open_playground(page, server)
    page.select_option("#model", ULTRA)
    page.fill("#prompt", prompt)
    page.set_input_files("#image_file", str(photo))
    page.wait_for_selector("#edit-area:not([hidden])")


def generated_edit(page: Any) -> tuple[str, str]:
    """Press Generate; the job's id and, once it completed, its input's caption."""
    page.click("#generate")
    card = page.wait_for_selector(".job[data-job-id]")
    job_id = str(card.get_attribute("data-job-id"))
    page.wait_for_selector(f".job[data-job-id='{job_id}'][data-status=completed]",
                           timeout=120_000)
    return job_id, page.locator(f".job[data-job-id='{job_id}'] .input-caption").inner_text()


def run_as_printed(codes: dict[str, str], folder: Path, sdks: dict[str, str]) -> None:
    """The curl tab run with bash, and each dialect's tab in its SDK's venv, from `folder`
    (where photo.png and mask.png are), as a reader would run them."""
    env = {**os.environ, "EASEL_API_KEY": KEY}
    made = subprocess.run(["bash", "-euo", "pipefail", "-c", codes["curl"]], cwd=folder,
                          capture_output=True, text=True, timeout=120, env=env)
    assert made.returncode == 0 and len(made.stdout.strip()) == 36, made.stdout + made.stderr
    for dialect, sdk in sdks.items():
        run = subprocess.run([str(sdk_python(sdk)), "-c", codes[dialect]], cwd=folder,
                             capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0 and run.stdout.strip(), (dialect, run.stdout + run.stderr)


def test_an_image_is_dropped_painted_inpainted_shown_beside_and_its_code_runs(
    page: Any, server: Server, tmp_path: Path
) -> None:
    """Start from an image: choose a file, paint the area to repaint, see the input beside the
    result, and run the edit's code (easel's API with curl, OpenAI's edits, Runware)."""
    start_from_image(page, server, tmp_path, "a red kite in the sky")
    assert "Image-to-image" in page.locator("#edit-mode").inner_text()
    assert "the input's shape (96×64)" in page.locator("#size-line").inner_text()
    box = page.locator("#edit-mask").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.7, steps=8)
    page.mouse.up()
    assert "Inpainting" in page.locator("#edit-mode").inner_text()
    shot(page, "edit-painted")
    job_id, caption = generated_edit(page)
    assert caption.startswith("input 96x64") and "painted area repainted" in caption
    shot(page, "edit-completed")
    view = httpx.get(f"{server.url}/easel/jobs/{job_id}", headers=AUTH).json()
    assert (view["operation"], view["strength"]) == ("inpaint", 0.8)
    assert view["width"] > view["height"]  # the input's shape
    stored = page.evaluate("localStorage.getItem('easel.history')")
    assert "data:image/png" not in stored and len(stored) < 50_000  # a thumbnail, not the image

    scope = f".job[data-job-id='{job_id}']"
    codes = card_codes(page, scope)
    assert set(codes) == {"curl", "aiml", "runware"}, set(codes)
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (50, 10, 90, 50))
    mask.save(tmp_path / "mask.png")
    run_as_printed(codes, tmp_path, {"aiml": "openai", "runware": "runware-sdk"})

    page.locator(f"{scope} .edit-this").first.click()  # a result becomes the next input
    page.wait_for_selector("#edit-mode >> text=/^Image-to-image/")
    result = page.locator(f"{scope} .tile:not(.input) .frame img").first
    size = result.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    page.wait_for_function("([w, h]) => document.querySelector('#edit-image').width === w "
                           "&& document.querySelector('#edit-image').height === h", arg=size)


def test_an_image_is_extended_by_margins_typed_in_and_its_code_runs(
    page: Any, server: Server, tmp_path: Path
) -> None:
    """Start from an image and extend it: the margins make the mask (no painting, no strength),
    the size line says the shape drawn, the card says what was extended, the curl runs."""
    start_from_image(page, server, tmp_path, "the sea goes on to the left")
    page.fill("#extend-left", "32")
    assert page.locator("#edit-mode").inner_text().startswith("Outpainting")
    assert "with the margins (128×64)" in page.locator("#size-line").inner_text()
    assert page.locator("#strength").is_disabled()
    shot(page, "edit-extend")
    job_id, caption = generated_edit(page)
    assert caption.startswith("input 96x64") and "extended (left 32)" in caption, caption
    view = httpx.get(f"{server.url}/easel/jobs/{job_id}", headers=AUTH).json()
    assert (view["operation"], view["strength"]) == ("inpaint", 1.0)
    assert view["width"] > view["height"]
    shot(page, "edit-extended")

    scope = f".job[data-job-id='{job_id}']"
    page.locator(f"{scope} details").evaluate("details => { details.open = true; }")
    tabs = page.locator(f"{scope} .tabs button").all()
    assert [tab.get_attribute("data-dialect") for tab in tabs] == ["curl"]
    tabs[0].click()
    code = page.locator(f"{scope} .snippet").inner_text()
    assert '"outpaint"' in code
    env = {**os.environ, "EASEL_API_KEY": KEY}
    made = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    assert made.returncode == 0 and len(made.stdout.strip()) == 36, made.stdout + made.stderr


def test_an_image_is_upscaled_by_the_upscale_tier_and_its_code_runs(
    page: Any, server: Server, tmp_path: Path
) -> None:
    """Start from an image and choose the upscale tier: no prompt, painting, margins or
    strength; the factor sets the size line; the card says what was done; the code runs: curl
    on easel's API, Runware's upscale task, google-genai's upscale_image."""
    start_from_image(page, server, tmp_path, "ignored by an upscale")
    page.locator(".tier-card[data-tier=upscale]").click()
    assert page.locator("#edit-mode").inner_text().startswith("Upscaling: the picture is "
                                                              "enlarged ×2")
    assert page.locator("#prompt").is_disabled()
    assert page.locator("#extend-row").is_hidden() and page.locator("#strength-row").is_hidden()
    assert page.locator("#image-remove").is_visible()  # the picture can still be swapped
    assert page.locator("#edit-legend").inner_text() == "The image to upscale"
    # Past the largest side the server shrinks the input first: the page says the same size.
    upscaled = httpx.get(f"{server.url}/easel/models", headers=AUTH).json()
    model = next(m for t in upscaled["tiers"] for m in t["models"] if m["upscales"])
    assert page.evaluate(f"upscaledSize(1500, 600, 4, {model['max_side']})") == [4096, 1636]
    page.select_option("#upscale_factor", "3")
    assert "the input ×3 (288×192)" in page.locator("#size-line").inner_text()
    shot(page, "upscale")
    job_id, caption = generated_edit(page)
    assert caption.startswith("input 96x64") and "upscaled ×3" in caption, caption
    view = httpx.get(f"{server.url}/easel/jobs/{job_id}", headers=AUTH).json()
    assert (view["operation"], view["width"], view["height"]) == ("upscale", 288, 192)
    shot(page, "upscaled")

    scope = f".job[data-job-id='{job_id}']"
    codes = card_codes(page, scope)
    assert set(codes) == {"curl", "runware", "google"}, set(codes)
    run_as_printed(codes, tmp_path, {"runware": "runware-sdk", "google": "google-genai-3"})
    # Choosing a tier that draws gives the prompt and the strength back.
    page.locator(".tier-card[data-tier=standard]").click()
    assert not page.locator("#prompt").is_disabled()
    assert page.locator("#strength-row").is_visible()
