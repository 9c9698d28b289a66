// The easel playground: a client of easel's own API (/easel/...), nothing more. Plain JS, no
// build step, no third-party code. State kept in this browser: the API key, the form's last
// settings and the history of jobs (localStorage).
"use strict";

const KEY_STORE = "easel.apiKey";
const HISTORY_STORE = "easel.history";
const FORM_STORE = "easel.form";
const HISTORY_LIMIT = 50;
// Browsers open about six connections per server: at most this many event streams at once,
// the other unfinished jobs are polled.
const MAX_STREAMS = 3;
const POLL_MS = 2000;
const FIELDS = ["prompt", "negative_prompt", "model", "aspect_ratio", "resolution", "num_images",
  "seed", "output_format", "output_quality", "safety_setting", "watermark"];
const DIALECTS = [["curl", "curl"], ["runware", "Runware (runware-sdk)"],
  ["wavespeed", "WaveSpeed (wavespeed)"], ["aiml", "OpenAI / AIML (openai)"],
  ["google", "Google Imagen (google-genai)"], ["gemini", "Gemini (google-genai)"]];

// Prompts to start from: the first ones are what easel-mini, the offline stand-in, can draw.
const EXAMPLES = ["a red circle on a white background", "two blue squares",
  "a yellow star above a green triangle", "a lighthouse at dusk, oil painting",
  "a bowl of ramen, studio photo"];

const $ = (selector, root = document) => root.querySelector(selector);
let catalog = null;           // GET /easel/models
const modelsById = new Map(); // id -> {model, tier}
const following = new Map();  // job id -> AbortController of its event stream
const retries = new Map();    // job id -> how often its stream was cut before it ended
// adapter name -> {use, weight}: kept per name, so that switching to another tier and back
// (or reloading) offers the same choices again.
let loraChoices = {};

class KeyNeeded extends Error {}

// -- storage --------------------------------------------------------------------------------

function apiKey() { return localStorage.getItem(KEY_STORE) || ""; }
function history() {
  try { return JSON.parse(localStorage.getItem(HISTORY_STORE) || "[]"); } catch { return []; }
}
function saveHistory(entries) {
  localStorage.setItem(HISTORY_STORE, JSON.stringify(entries.slice(0, HISTORY_LIMIT)));
}
function updateEntry(id, change) {
  const entries = history();
  const entry = entries.find((e) => e.id === id);
  if (!entry) return entry;
  // An end is final. Views come from the event stream and from replies (cancel, a refresh)
  // that may arrive after it: a stale "processing" must not cover "cancelled".
  if (change.view && isTerminal(entry.view) && !isTerminal(change.view)) return null;
  Object.assign(entry, change);
  saveHistory(entries);
  return entry;
}

// -- the API ----------------------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    askForKey(apiKey() ? "The saved API key was refused. Enter a valid key."
      : "This server needs an API key. It is kept in this browser only.");
    throw new KeyNeeded();
  }
  return response;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && body.error && typeof body.error === "object") return body.error;
    return { message: String(body.error || response.statusText) };
  } catch { return { message: `${response.status} ${response.statusText}` }; }
}

// -- the key ----------------------------------------------------------------------------------

function askForKey(reason) {
  $("#key-reason").textContent = reason;
  $("#api-key").value = apiKey();
  const dialog = $("#key-dialog");
  if (!dialog.open) dialog.showModal();
}

function bindKey() {
  $("#key-button").addEventListener("click", () => askForKey("The key is kept in this browser only."));
  $("#key-form").addEventListener("submit", () => {
    localStorage.setItem(KEY_STORE, $("#api-key").value.trim());
    start();
  });
  $("#key-forget").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORE);
    $("#api-key").value = "";
  });
}

// -- the catalog and the form -----------------------------------------------------------------

async function loadCatalog() {
  const response = await api("/easel/models");
  if (!response.ok) throw new Error((await errorOf(response)).message);
  catalog = await response.json();
  modelsById.clear();
  const select = $("#model");
  select.replaceChildren();
  for (const tier of catalog.tiers) {
    const group = document.createElement("optgroup");
    group.label = tier.label;
    for (const model of tier.models) {
      modelsById.set(model.id, { model, tier });
      group.append(new Option(model.id, model.id));  // the whole id: it is what gets copied
    }
    select.append(group);
  }
  // Until one is chosen: the first tier's first Imagen id.
  const first = catalog.tiers[0] && catalog.tiers[0].models;
  if (first && first.length) select.value = (first.find((m) => m.id.includes("imagen")) || first[0]).id;
  renderTierCards();
  const formats = $("#output_format");
  formats.replaceChildren(...catalog.formats.map((f) => new Option(f.toUpperCase(), f)));
  restoreForm(JSON.parse(localStorage.getItem(FORM_STORE) || "{}"));
}

function chosen() { return modelsById.get($("#model").value); }

/** The tiers as named cards: what draws, its licence, the hosted API's price, and whether a
 * stand-in draws here. Choosing one picks its first model id (the select below refines it). */
function renderTierCards() {
  const cards = $("#tier-cards");
  cards.replaceChildren(...catalog.tiers.map((tier) => {
    const card = document.createElement("button");
    card.type = "button";
    card.className = "tier-card";
    card.dataset.tier = tier.tier;
    card.setAttribute("role", "radio");
    const name = document.createElement("strong");
    name.textContent = tier.label;
    const backend = document.createElement("span");
    backend.className = "muted small";
    backend.textContent = `${tier.source} · ${tier.license.name}`;
    const price = document.createElement("span");
    price.className = "small";
    price.textContent = `hosted price $${tier.price_usd.toFixed(3)}/image`;
    card.append(name, backend, price);
    if (tier.stand_in || tier.refused) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = tier.refused ? "refused here" : `stand-in: ${tier.stand_in}`;
      card.append(badge);
    }
    card.addEventListener("click", () => {
      // The tier's first Imagen id (the Gemini ids that also name it come after).
      $("#model").value = (tier.models.find((m) => m.id.includes("imagen")) || tier.models[0]).id;
      onModelChange();
      rememberForm();
    });
    return card;
  }));
}

function markTierCard(tierName) {
  for (const card of document.querySelectorAll(".tier-card")) {
    const on = card.dataset.tier === tierName;
    card.classList.toggle("chosen", on);
    card.setAttribute("aria-checked", String(on));
  }
}

function onModelChange() {
  const found = chosen();
  if (!found) return;
  const { model, tier } = found;
  markTierCard(tier.tier);
  const ratios = [...new Set(model.sizes.map((s) => s.aspect_ratio))];
  fillSelect($("#aspect_ratio"), ratios.map((r) => [r, r]));
  fillSelect($("#resolution"), model.resolutions.map((r) => [r, r.toUpperCase()]));
  const count = $("#num_images");
  count.max = model.max_images;
  $("#max-images").textContent = `(1–${model.max_images})`;
  const negative = $("#negative_prompt");
  negative.disabled = !model.negative_prompt;
  $("#negative-note").textContent = model.negative_prompt ? ""
    : model.upscales ? `(${model.id} enlarges an image: it takes no prompt)`
    : `(${model.id} takes none: ${tier.backend} runs without classifier-free guidance)`;
  const weights = tier.stand_in ? `drawn by ${tier.stand_in} (weights absent)` : `weights ${tier.weights}`;
  const steps = tier.stand_in ? tier.stand_in_steps : tier.steps;  // what actually runs
  $("#model-facts").textContent = `${tier.backend} · ${tier.license.name}` +
    `${tier.license.commercial ? "" : " (not for commercial use)"} · ${steps} steps · ${weights}`;
  const notice = $("#notice");
  notice.hidden = !tier.stand_in && !tier.refused;
  notice.textContent = tier.refused ? `This server refuses ${tier.label}: ${tier.refused}`
    : tier.stand_in ? `${tier.label} runs on a built-in stand-in here: the weights of ` +
      `${tier.source} are absent, so ${tier.stand_in} draws instead of the real model ` +
      (tier.stand_in_trained ? "(easel-mini: the project's small model, trained for simple " +
       "scenes of shapes and colours). " : "(a tiny untrained pipeline: its images are noise). ") +
      `Run \`easel pull ${tier.tier}\` on the server for real images.` : "";
  renderLoras(tier);
  updateEditMode();
  updateSizeLine();
}

/** The LoRA adapters the operator allow-listed for the chosen tier's backend: a row each (use
 * it, its weight, what it is), or one line saying there are none and how they are added. */
function renderLoras(tier) {
  const adapters = tier.loras || [];
  $("#loras").hidden = adapters.length === 0;
  const none = $("#lora-none");
  none.hidden = adapters.length > 0;
  none.textContent = `Adapters (LoRA): none is allow-listed for ${tier.backend} on this ` +
    "server. The operator adds them with `easel lora add` (docs/lora.md).";
  $("#lora-list").replaceChildren(...adapters.map(loraRow));
  // The server refuses adapters on a stand-in: say so before a job is refused.
  const note = $("#lora-note");
  note.hidden = !tier.stand_in;
  note.textContent = tier.stand_in ? `A stand-in draws ${tier.label} here: adapters are ` +
    `taken once the weights of ${tier.source} are present (easel pull ${tier.tier}).` : "";
}

function loraRow(adapter) {
  const saved = loraChoices[adapter.name] || {};
  const row = document.createElement("div");
  row.className = "lora";
  row.dataset.lora = adapter.name;
  const use = document.createElement("input");
  use.type = "checkbox";
  use.className = "lora-use";
  use.checked = Boolean(saved.use);
  const name = document.createElement("label");
  name.className = "inline lora-name";
  const title = document.createElement("strong");
  title.textContent = adapter.name;
  name.append(use, title);
  const weight = document.createElement("input");
  weight.type = "number";
  weight.className = "lora-weight";
  Object.assign(weight, { step: "0.05", min: "-4", max: "4" });
  weight.value = saved.weight ?? String(adapter.default_weight);
  weight.title = `weight, -4 to 4 (its default: ${adapter.default_weight})`;
  weight.setAttribute("aria-label", `weight of ${adapter.name}`);
  const weighted = document.createElement("label");
  weighted.className = "inline lora-weighted muted";
  weighted.append("weight", weight);
  const facts = document.createElement("div");
  facts.className = "lora-facts muted small";
  const lines = [`for ${adapter.base} · ` +
    (adapter.license ? `licence: ${adapter.license}` : "licence not declared")];
  if (adapter.trigger_words) {
    lines.push(`trigger words: ${adapter.trigger_words} (a prompt should carry them)`);
  }
  if (adapter.aliases && adapter.aliases.length) lines.push(`also named ${adapter.aliases.join(", ")}`);
  facts.replaceChildren(...lines.map((text) => {
    const line = document.createElement("div");
    line.textContent = text;
    return line;
  }));
  const keep = () => {
    loraChoices[adapter.name] = { use: use.checked, weight: weight.value };
    rememberForm();
  };
  use.addEventListener("change", keep);
  weight.addEventListener("input", keep);
  row.append(name, weighted, facts);
  return row;
}

/** The checked adapters of the chosen tier, in the order shown; no weight typed: the
 * adapter's default (the server's). */
function chosenLoras() {
  return [...document.querySelectorAll("#lora-list .lora")]
    .filter((row) => row.querySelector(".lora-use").checked)
    .map((row) => {
      const weight = row.querySelector(".lora-weight").value.trim();
      return weight === "" ? { name: row.dataset.lora }
        : { name: row.dataset.lora, weight: Number(weight) };
    });
}

/** Choices from a request's `loras` (Reuse settings): those it sent, checked; the others
 * unchecked, keeping their weights. */
function choicesOf(loras, previous) {
  const choices = Object.fromEntries(Object.entries(previous)
    .map(([name, choice]) => [name, { ...choice, use: false }]));
  for (const lora of loras || []) {
    choices[lora.name] = { use: true, weight: lora.weight };  // none sent: the default
  }
  return choices;
}

function fillSelect(select, pairs) {
  const previous = select.value;
  select.replaceChildren(...pairs.map(([value, label]) => new Option(label, value)));
  if (pairs.some(([value]) => value === previous)) select.value = previous;
}

function updateSizeLine() {
  const found = chosen();
  if (!found) return;
  const size = found.model.sizes.find((s) => s.aspect_ratio === $("#aspect_ratio").value
    && s.resolution === $("#resolution").value);
  const count = imageCount(found.model);
  // A price only for a count the model takes: never "$19.98 for 999".
  const price = count === null ? `${found.model.id} draws 1 to ${found.model.max_images} images`
    : `hosted price $${(found.model.price_usd * count).toFixed(3)} for ${count} (this server charges nothing)`;
  // From an image: its shape, at the model's nearest size (the server picks it).
  const extra = editImage ? margins() : null;
  const factor = upscaleFactor();
  if (factor && !editImage) {
    $("#size-line").textContent = "choose the picture to upscale";
    return;
  }
  const [upWidth, upHeight] = factor
    ? upscaledSize(editImage.width, editImage.height, factor, found.model.max_side) : [0, 0];
  const drawn = editImage && factor
    ? `the input ×${factor} (${upWidth}×${upHeight})`
    : editImage && extending()
    ? `the input's shape with the margins (${editImage.width + extra.left + extra.right}×` +
      `${editImage.height + extra.top + extra.bottom})`
    : editImage ? `the input's shape (${editImage.width}×${editImage.height})`
    : size ? `${size.width}×${size.height}` : "";
  $("#size-line").textContent = drawn ? `${drawn} · ${price}` : "";
  $("#quality-value").textContent = $("#output_quality").value;
}

/** The number of images asked for, or null when it is not one the model takes. */
function imageCount(model) {
  if (model.upscales) return 1;  // one image in, one out: the count is not asked
  const text = $("#num_images").value.trim();
  const count = Number(text);
  return text !== "" && Number.isInteger(count) && count >= 1 && count <= model.max_images
    ? count : null;
}

function formRequest() {
  const factor = upscaleFactor();
  if (factor && editImage) {  // an upscaler enlarges the image: no prompt, no size, one image
    const body = { model: $("#model").value, image: editImage.dataUri, upscale: factor,
      output_format: $("#output_format").value, output_quality: Number($("#output_quality").value) };
    if ($("#watermark").checked) body.watermark = true;
    return body;
  }
  const body = {
    model: $("#model").value, prompt: $("#prompt").value,
    aspect_ratio: $("#aspect_ratio").value, resolution: $("#resolution").value,
    num_images: Number($("#num_images").value), output_format: $("#output_format").value,
    output_quality: Number($("#output_quality").value),
  };
  const negative = $("#negative_prompt");
  if (!negative.disabled && negative.value.trim()) body.negative_prompt = negative.value;
  const seed = $("#seed").value.trim();
  if (seed !== "") body.seed = Number(seed);
  // A flagged image is withheld: the page never shows it (docs/safety.md).
  const safety = $("#safety_setting").value;
  if (safety !== "block_none") Object.assign(body, { safety_setting: safety, on_flagged: "withhold" });
  if ($("#watermark").checked) body.watermark = true;
  const loras = chosenLoras();
  if (loras.length) body.loras = loras;
  if (editImage) {
    // Drawn from the image, in its own shape: no aspect ratio is sent.
    delete body.aspect_ratio;
    delete body.resolution;
    body.image = editImage.dataUri;
    if (extending()) {
      body.outpaint = margins();  // the margins are the mask; drawn afresh (strength 1)
    } else {
      if (masked) body.mask = maskDataUri();
      body.strength = Number($("#strength").value);
    }
  }
  return body;
}

const SIDES = ["top", "right", "bottom", "left"];

/** The size an upscale produces, as the server decides it: the input times the factor, the
 * input shrunk first (aspect kept) when that would pass `maxSide` a side. */
function upscaledSize(width, height, factor, maxSide) {
  if (Math.max(width, height) * factor <= maxSide) return [width * factor, height * factor];
  const scale = Math.floor(maxSide / factor) / Math.max(width, height);
  return [Math.max(1, Math.floor(width * scale)) * factor,
    Math.max(1, Math.floor(height * scale)) * factor];
}

/** The factor asked for when the chosen model is an upscaler, else null. */
function upscaleFactor() {
  const found = chosen();
  return found && found.model.upscales ? Number($("#upscale_factor").value) : null;
}

/** The outpaint margins typed in, in pixels of the output. */
function margins() {
  return Object.fromEntries(SIDES.map((side) => [side, Math.max(0,
    Math.round(Number($(`#extend-${side}`).value) || 0))]));
}

function extending() {
  if (!editImage) return false;
  const extra = margins();
  return SIDES.some((side) => extra[side] > 0);
}

// -- start from an image: upload or drop it, paint what to repaint ----------------------------

const THUMB_SIDE = 160;  // the input a job card shows beside its results
let editImage = null;    // {dataUri, width, height}
let masked = false;      // something is painted on the mask

function bindEdit() {
  const drop = $("#drop");
  $("#image_file").addEventListener("change", (event) => {
    if (event.target.files[0]) loadFile(event.target.files[0]);
    event.target.value = "";
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files[0]) loadFile(event.dataTransfer.files[0]);
  });
  $("#mask-clear").addEventListener("click", clearMask);
  $("#image-remove").addEventListener("click", removeImage);
  $("#strength").addEventListener("input", () => {
    $("#strength-value").textContent = Number($("#strength").value).toFixed(2);
  });
  for (const side of SIDES) {
    $(`#extend-${side}`).addEventListener("input", () => { updateEditMode(); updateSizeLine(); });
  }
  $("#upscale_factor").addEventListener("change", () => {
    updateEditMode();
    updateSizeLine();
    rememberForm();
  });
  bindPainting($("#edit-mask"));
}

function loadFile(file) {
  const reader = new FileReader();
  reader.onload = () => useImage(String(reader.result));
  reader.readAsDataURL(file);
}

/** Edit `dataUri`: drawn on the page at its own size, with an empty mask over it. */
function useImage(dataUri) {
  const image = new Image();
  image.onload = () => {
    editImage = { dataUri, width: image.naturalWidth, height: image.naturalHeight };
    for (const canvas of [$("#edit-image"), $("#edit-mask")]) {
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
    }
    $("#edit-image").getContext("2d").drawImage(image, 0, 0);
    clearMask();
    $("#edit-area").hidden = false;
    shapeFromImage(true);
    $('.field-error[data-for="image"]').textContent = "";
    updateSizeLine();
  };
  image.onerror = () => showError({ parameter: "image",
    message: "That file is not an image this browser can read (PNG, JPEG or WEBP)" });
  image.src = dataUri;
}

function removeImage() {
  editImage = null;
  masked = false;
  $("#edit-area").hidden = true;
  shapeFromImage(false);
  updateEditMode();
  updateSizeLine();
}

/** The image sets the shape: the aspect ratio and resolution are not sent while it is there. */
function shapeFromImage(fromImage) {
  for (const name of ["aspect_ratio", "resolution"]) {
    $(`#${name}`).disabled = fromImage;
    $(`#${name}`).title = fromImage ? "drawn in the input's shape" : "";
  }
}

function clearMask() {
  const canvas = $("#edit-mask");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  masked = false;
  updateEditMode();
}

function bindPainting(canvas) {
  let last = null;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width,
      (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    last = at(event);
    paintStroke(canvas, last, last);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (last === null) return;
    const point = at(event);
    paintStroke(canvas, last, point);
    last = point;
  });
  for (const end of ["pointerup", "pointercancel"]) canvas.addEventListener(end, () => { last = null; });
}

function paintStroke(canvas, from, to) {
  const context = canvas.getContext("2d");
  // The brush is in page pixels, whatever the image's own size.
  const scale = canvas.width / canvas.getBoundingClientRect().width;
  context.strokeStyle = "rgb(255, 60, 60)";
  context.lineCap = "round";
  context.lineJoin = "round";
  context.lineWidth = Number($("#brush").value) * 2 * scale;
  context.beginPath();
  context.moveTo(...from);
  context.lineTo(to[0] + 0.01, to[1]);
  context.stroke();
  if (!masked) { masked = true; updateEditMode(); }
}

/** The mask as the server reads it: white where painted, black elsewhere, the image's size. */
function maskDataUri() {
  const canvas = $("#edit-mask");
  const painted = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const out = document.createElement("canvas");
  out.width = canvas.width;
  out.height = canvas.height;
  const context = out.getContext("2d");
  const levels = context.createImageData(canvas.width, canvas.height);
  for (let i = 0; i < painted.length; i += 4) {
    const level = painted[i + 3] > 0 ? 255 : 0;
    levels.data[i] = level; levels.data[i + 1] = level; levels.data[i + 2] = level;
    levels.data[i + 3] = 255;
  }
  context.putImageData(levels, 0, 0);
  return out.toDataURL("image/png");
}

function updateEditMode() {
  const factor = upscaleFactor();
  // An upscaler enlarges the picture as it is: nothing to paint, extend, prompt or strengthen.
  for (const [id, off] of [["upscale-row", !factor], ["extend-row", Boolean(factor)],
    ["strength-row", Boolean(factor)], ["brush-label", Boolean(factor)],
    ["mask-clear", Boolean(factor)]]) $(`#${id}`).hidden = off;
  // An upscaler needs the picture, and takes its shape from it.
  $("#edit-legend").textContent = factor ? "The image to upscale" : "Start from an image";
  $("#edit-optional").textContent = factor ? "(required)" : "(optional)";
  shapeFromImage(Boolean(editImage) || Boolean(factor));
  $("#prompt").disabled = Boolean(factor);
  $("#prompt").title = factor ? "an upscale takes no prompt" : "";
  if (factor) {
    $("#edit-mask").classList.add("off");
    const found = chosen();
    $("#edit-mode").textContent = `Upscaling: the picture is enlarged ×${factor} by ` +
      `${found.tier.backend}; nothing is drawn (prompt, painting and strength are off).`;
    return;
  }
  const extend = extending();
  // Outpainting makes its own mask and draws the margins afresh: no painting, no strength.
  $("#edit-mask").classList.toggle("off", extend);
  $("#strength").disabled = extend;
  $("#strength-value").textContent = extend ? "1.00" : Number($("#strength").value).toFixed(2);
  $("#edit-mode").textContent = extend
    ? "Outpainting: the picture is extended by the margins, which are drawn; every pixel of " +
      "it is kept (painting and strength are off)."
    : masked
    ? "Inpainting: the painted area is drawn anew; every other pixel is kept."
    : "Image-to-image: the whole picture is redrawn (lower strength stays closer to it). " +
      "Paint on it to repaint only part of it.";
}

/** A small JPEG of the input (and its mask, tinted) for the job card: history keeps that, not
 * the image itself (browser storage holds a few MB). */
function inputThumb() {
  const scale = THUMB_SIDE / Math.max(editImage.width, editImage.height);
  const out = document.createElement("canvas");
  out.width = Math.max(1, Math.round(editImage.width * scale));
  out.height = Math.max(1, Math.round(editImage.height * scale));
  const context = out.getContext("2d");
  context.drawImage($("#edit-image"), 0, 0, out.width, out.height);
  if (masked) {
    context.globalAlpha = 0.55;
    context.drawImage($("#edit-mask"), 0, 0, out.width, out.height);
  }
  return out.toDataURL("image/jpeg", 0.8);
}

/** The request as history keeps it: the input as a thumbnail, no image data. */
function storedRequest(body) {
  if (!body.image) return body;
  const { image, mask, ...rest } = body;
  return { ...rest, edit: { thumb: inputThumb(), masked: Boolean(mask), width: editImage.width,
    height: editImage.height } };
}

/** Edit one of the results: its image becomes the input. */
async function editResult(url) {
  const response = await fetch(url);
  const blob = await response.blob();
  loadFile(blob);
  $("#edit").scrollIntoView({ behavior: "smooth", block: "center" });
}

function restoreForm(saved) {
  const model = $("#model");
  if (saved.model && modelsById.has(saved.model)) model.value = saved.model;
  loraChoices = saved.lora_choices || choicesOf(saved.loras, loraChoices);
  onModelChange();
  for (const name of ["prompt", "negative_prompt", "aspect_ratio", "resolution", "num_images",
    "output_format", "output_quality"]) {
    if (saved[name] !== undefined && saved[name] !== null) $(`#${name}`).value = saved[name];
  }
  $("#seed").value = saved.seed ?? "";
  $("#seed_lock").checked = Boolean(saved.seed_lock);
  if (saved.safety_setting) $("#safety_setting").value = saved.safety_setting;
  $("#watermark").checked = Boolean(saved.watermark);
  if (saved.upscale) $("#upscale_factor").value = String(saved.upscale);
  updateEditMode();
  updateSizeLine();
}

function rememberForm() {
  const { image, mask, strength, ...form } = formRequest();  // an image is not kept
  localStorage.setItem(FORM_STORE, JSON.stringify({
    ...form, prompt: $("#prompt").value, negative_prompt: $("#negative_prompt").value,
    upscale: $("#upscale_factor").value,
    seed: $("#seed").value, seed_lock: $("#seed_lock").checked, lora_choices: loraChoices,
  }));
}

// -- errors beside fields ---------------------------------------------------------------------

function clearErrors() {
  for (const box of document.querySelectorAll(".field-error")) box.textContent = "";
  for (const field of document.querySelectorAll(".invalid")) field.classList.remove("invalid");
}

function showError(error, body) {
  // `loras` (the list) or `loras[i]` (the i-th adapter sent): beside the adapters, with the
  // weight of the adapter it names marked.
  const lora = /^loras(?:\[(\d+)\])?$/.exec(error.parameter || "");
  if (lora) {
    $('.field-error[data-for="loras"]').textContent = error.message;
    const sent = lora[1] !== undefined && body && body.loras ? body.loras[Number(lora[1])] : null;
    const row = sent && [...document.querySelectorAll("#lora-list .lora")]
      .find((r) => r.dataset.lora === sent.name);
    if (row) {
      const weight = row.querySelector(".lora-weight");
      weight.classList.add("invalid");
      weight.focus();
    }
    return;
  }
  // The input image, its mask or the strength: beside the image.
  if (["image", "mask", "strength"].includes(error.parameter)) {
    $('.field-error[data-for="image"]').textContent = error.message;
    return;
  }
  const parameter = FIELDS.includes(error.parameter) ? error.parameter : "form";
  const box = $(`.field-error[data-for="${parameter}"]`);
  box.textContent = error.message;
  if (parameter !== "form") {
    const field = $(`#${parameter}`);
    field.classList.add("invalid");
    field.focus();
  }
}

// -- generate ---------------------------------------------------------------------------------

async function generate(event) {
  event.preventDefault();
  clearErrors();
  const found = chosen();
  if (found && imageCount(found.model) === null) {  // before the server says "got 0"
    showError({ parameter: "num_images",
                message: `Images: a whole number from 1 to ${found.model.max_images}` });
    return;
  }
  const body = formRequest();
  const stored = storedRequest(body);
  rememberForm();
  const button = $("#generate");
  button.disabled = true;
  try {
    const response = await api("/easel/jobs", { method: "POST", body: JSON.stringify(body) });
    if (!response.ok) { showError(await errorOf(response), body); return; }
    const job = await response.json();
    const entry = { id: job.id, request: stored, view: job, created: job.created_at };
    saveHistory([entry, ...history().filter((e) => e.id !== job.id)]);
    // Locked: the next job draws with this seed (the one the server chose, when none was
    // typed). Unlocked: each job gets a fresh random seed.
    if (!$("#seed_lock").checked) $("#seed").value = "";
    else if (!$("#seed").value) $("#seed").value = job.seeds[0];
    rememberForm();
    renderEntry(entry, true);
    track(entry.id);
  } catch (error) {
    if (!(error instanceof KeyNeeded)) showError({ message: `Could not reach easel: ${error.message}` });
  } finally {
    button.disabled = false;
  }
}

// -- the progress stream ----------------------------------------------------------------------

// Follow a job until it ends: over its event stream while few are open, else by polling.
function track(id) {
  if (following.has(id)) return;
  if (following.size < MAX_STREAMS) follow(id);
  else setTimeout(() => refresh(id), POLL_MS);
}

async function follow(id) {
  const controller = new AbortController();
  following.set(id, controller);
  try {
    const response = await api(`/easel/jobs/${encodeURIComponent(id)}/events`,
      { signal: controller.signal });
    if (response.status === 404) { markGone(id); return; }
    if (!response.ok) throw new Error((await errorOf(response)).message);
    setReachable(true);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data: "))
          .map((l) => l.slice(6)).join("\n");
        if (data) showJob(JSON.parse(data));
      }
    }
  } catch (error) {
    if (error.name === "AbortError" || error instanceof KeyNeeded) return;
    if (error instanceof TypeError) setReachable(false);  // the network, not an HTTP answer
  } finally {
    following.delete(id);
  }
  const entry = history().find((e) => e.id === id);
  if (entry && !entry.gone && !isTerminal(entry.view)) {
    // The stream was cut (a restart, a proxy): look again, waiting longer each time.
    const tries = (retries.get(id) || 0) + 1;
    retries.set(id, tries);
    setTimeout(() => refresh(id), Math.min(1000 * 2 ** (tries - 1), 15000));
  }
}

async function refresh(id) {
  try {
    const response = await api(`/easel/jobs/${encodeURIComponent(id)}`);
    setReachable(true);
    if (response.status === 404) { markGone(id); return; }
    if (!response.ok) { setTimeout(() => refresh(id), POLL_MS); return; }
    const job = await response.json();
    showJob(job);
    if (!isTerminal(job)) track(id);
  } catch (error) {
    // Unreachable for now: say so, and try again later (no key: the dialog asks for one).
    if (error instanceof KeyNeeded) return;
    setReachable(false);
    setTimeout(() => refresh(id), POLL_MS);  // a restart takes seconds: notice it soon
  }
}

/** Whether the server answers, said at the top of the page: a job in progress stays on the
 * server while it is away, and the page reconnects by itself. */
function setReachable(reachable) {
  const banner = $("#connection");
  if (reachable) { banner.hidden = true; delete banner.dataset.since; return; }
  if (!banner.dataset.since) banner.dataset.since = new Date().toLocaleTimeString();
  banner.textContent = `The server does not answer (since ${banner.dataset.since}). Jobs in ` +
    "progress are kept on the server; this page reconnects by itself.";
  banner.hidden = false;
}

function isTerminal(job) { return ["completed", "failed", "cancelled"].includes(job && job.status); }

function markGone(id) {
  const entry = updateEntry(id, { gone: true });
  if (entry) renderEntry(entry);
}

// -- rendering --------------------------------------------------------------------------------

function cardOf(id) { return document.querySelector(`.job[data-job-id="${CSS.escape(id)}"]`); }

function renderHistory() {
  $("#jobs").replaceChildren();
  const entries = history();
  for (const entry of [...entries].reverse()) renderEntry(entry, true);
  for (const entry of entries) {
    if (!entry.gone) refresh(entry.id);
  }
}

function renderEntry(entry, prepend = false) {
  let card = cardOf(entry.id);
  if (!card) {
    card = $("#job-template").content.firstElementChild.cloneNode(true);
    card.dataset.jobId = entry.id;
    card.querySelector(".cancel").addEventListener("click", () => cancel(entry.id));
    card.querySelector(".reuse").addEventListener("click", () => reuse(entry.id));
    card.querySelector(".copy-code").addEventListener("click", (e) =>
      copy(card.querySelector(".snippet").textContent, e.target));
    if (prepend) $("#jobs").prepend(card); else $("#jobs").append(card);
    renderCode(card, entry);
  }
  $("#empty").hidden = true;
  paint(card, entry);
}

function showJob(job) {
  const entry = updateEntry(job.id, { view: job });
  if (entry) renderEntry(entry);
}

function paint(card, entry) {
  const job = entry.view || {};
  const status = entry.gone ? "gone" : job.status || "queued";
  const label = card.querySelector(".job-status");
  label.textContent = status === "gone" ? "no longer on the server" : status;
  label.className = `job-status ${status}`;
  card.dataset.status = status;
  card.querySelector(".job-model").textContent = `${job.model} · ${job.size}`;
  card.querySelector(".job-prompt").textContent = job.prompt || entry.request.prompt;
  card.querySelector(".job-progress").textContent = progressLine(job);
  card.querySelector(".job-timing").textContent = timingLine(job);
  // The adapters it ran with, weights resolved by the server (the request's until it answers).
  const loras = job.loras || entry.request.loras || [];
  const adapters = card.querySelector(".job-loras");
  adapters.hidden = loras.length === 0;
  adapters.textContent = loras.length ? `LoRA: ${loraLine(loras)}` : "";
  card.querySelector(".cancel").hidden = isTerminal(job) || entry.gone;
  const error = card.querySelector(".job-error");
  error.hidden = !job.error;
  error.textContent = job.error ? job.error.message : "";
  const tiles = card.querySelector(".tiles");
  const outputs = job.outputs || [];
  // An edit: its input beside its results.
  const edit = entry.request.edit;
  if (edit && !tiles.querySelector(".tile.input")) {
    tiles.prepend($("#input-template").content.firstElementChild.cloneNode(true));
  }
  const input = tiles.querySelector(".tile.input");
  if (edit) {
    input.querySelector(".frame").style.setProperty("--ratio", `${edit.width} / ${edit.height}`);
    input.querySelector(".input-image").src = edit.thumb;
    input.querySelector(".input-caption").textContent =
      `input ${edit.width}x${edit.height}` + (edit.masked ? " · painted area repainted" : "") +
      (entry.request.upscale ? ` · upscaled ×${entry.request.upscale}` : "") +
      (entry.request.outpaint ? ` · extended (${SIDES.filter((s) => entry.request.outpaint[s])
        .map((s) => `${s} ${entry.request.outpaint[s]}`).join(", ")})` : "") +
      (entry.request.strength !== undefined ? ` · strength ${entry.request.strength}` : "");
  }
  const results = () => [...tiles.children].filter((tile) => !tile.classList.contains("input"));
  while (results().length < outputs.length) {
    tiles.append($("#tile-template").content.firstElementChild.cloneNode(true));
  }
  outputs.forEach((output, i) => paintTile(results()[i], job, output));
}

/** "ink × 0.6, oil × default": a request's or a job's adapters. */
function loraLine(loras) {
  return loras.map((l) => `${l.name} × ${l.weight ?? "default"}`).join(", ");
}

/** How long the job took, or has been waiting or running: from its own timestamps. */
function timingLine(job) {
  const at = (value) => (value ? Date.parse(value) : NaN);
  const created = at(job.created_at), started = at(job.started_at), finished = at(job.finished_at);
  const seconds = (from, to) => `${Math.max(0, (to - from) / 1000).toFixed(1)} s`;
  if (job.status === "completed" && finished && started) {
    return `Generated in ${seconds(started, finished)}` +
      (created ? ` · waited ${seconds(created, started)} in the queue` : "");
  }
  if (job.status === "processing" && started) return `running for ${seconds(started, Date.now())}`;
  if (job.status === "queued" && created) return `waiting for ${seconds(created, Date.now())}`;
  return "";
}

function progressLine(job) {
  const { step, total, fraction } = job.progress || { step: 0, total: 0, fraction: 0 };
  const percent = Math.round(fraction * 100);
  if (job.status === "completed") return `${total} of ${total} steps · 100%`;
  if (job.status === "processing" && total) return `step ${step} of ${total} · ${percent}%`;
  if (isTerminal(job) && total) return `stopped at step ${step} of ${total}`;
  if (job.status === "queued" && job.queue) return queueLine(job.queue);
  return isTerminal(job) ? "" : "queued";
}

/** Where a queued job stands, as the server's fair order puts it. */
function queueLine(queue) {
  const place = queue.ahead === 0 ? "next in the queue"
    : `${queue.ahead} job${queue.ahead === 1 ? "" : "s"} ahead`;
  const wait = queue.wait_seconds;
  if (wait === null || wait === undefined) return `queued · ${place}`;
  return `queued · ${place} · about ${wait < 1 ? "under a second" : `${Math.round(wait)} s`}`;
}

function paintTile(tile, job, output) {
  tile.style.setProperty("--ratio", `${job.width} / ${job.height}`);
  // Images live as long as the server keeps them (EASEL_IMAGE_TTL_SECONDS, an hour by
  // default): each tile says until when, and an expired one says so instead of a dead link.
  const expires = (job.expires_at || [])[output.index];
  const expired = Boolean(output.url && expires && Date.parse(expires) <= Date.now());
  tile.querySelector(".seed").textContent = `seed ${output.seed}` + (output.url && expires
    ? (expired ? " · expired" : ` · kept until ${new Date(expires).toLocaleTimeString()}`) : "");
  const copySeed = tile.querySelector(".copy-seed");
  copySeed.onclick = () => copy(String(output.seed), copySeed);
  const frame = tile.querySelector(".frame");
  const download = tile.querySelector(".download");
  if (expired) {
    download.hidden = true;
    download.removeAttribute("href");
    frame.replaceChildren(placeholder("expired"));
    return;
  }
  if (output.url) {
    const url = sameOrigin(output.url);
    let image = frame.querySelector("img");
    if (!image) {
      image = document.createElement("img");
      image.alt = `result ${output.index + 1}, seed ${output.seed}`;
      image.addEventListener("click", () => enlarge(image.src));
      image.addEventListener("error", () => {
        frame.replaceChildren(placeholder("expired"));
        download.hidden = true;  // no link to an image the server no longer has
      }, { once: true });
      frame.replaceChildren(image);
      image.src = url;
    }
    download.href = url;
    download.download = `easel-${output.seed}.${job.output_format === "jpeg" ? "jpg" : job.output_format}`;
    download.hidden = false;
    const editThis = tile.querySelector(".edit-this");
    editThis.hidden = false;
    editThis.onclick = () => editResult(url);
    return;
  }
  download.hidden = true;
  const box = frame.querySelector(".placeholder") || frame.appendChild(placeholder(""));
  const bar = box.querySelector("progress");
  const text = box.querySelector(".percent");
  bar.value = Math.round((job.progress ? job.progress.fraction : 0) * 100);
  // Running: the job's own progress line. Ended without an image: why (a completed job's
  // image is gone once its URL expired).
  if (!isTerminal(job)) text.textContent = progressLine(job);
  else if (output.withheld) text.textContent = WITHHELD[output.withheld] || "withheld";
  else text.textContent = job.status === "completed" ? "expired" : job.status;
}

// Why the safety check kept an image back (docs/safety.md).
const WITHHELD = {
  nsfw: "withheld by the safety check",
  person: "withheld: it shows a person (person generation dont_allow)",
};

// Image URLs name the server's public address, which may not be the one this page was opened
// at (localhost, a LAN name): load them from this page's own origin, as its policy requires.
function sameOrigin(url) {
  const parsed = new URL(url, window.location.href);
  return parsed.pathname + parsed.search;
}

function placeholder(text) {
  const box = $("#tile-template").content.querySelector(".placeholder").cloneNode(true);
  box.querySelector(".percent").textContent = text;
  return box;
}

function enlarge(src) {
  $("#lightbox-image").src = src;
  $("#lightbox").showModal();
}

async function copy(text, button) {
  try { await navigator.clipboard.writeText(text); } catch {
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  const before = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = before; }, 1200);
}

async function cancel(id) {
  try {
    const response = await api(`/easel/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });
    if (response.ok) showJob(await response.json());
  } catch { /* the stream shows the outcome */ }
}

function reuse(id) {
  const entry = history().find((e) => e.id === id);
  if (!entry) return;
  // The same settings and the seed the job drew with, locked: Generate makes the same image.
  const seed = entry.view && entry.view.seeds ? entry.view.seeds[0] : entry.request.seed;
  restoreForm({ negative_prompt: "", ...entry.request, seed: seed ?? "",
    seed_lock: seed !== undefined });
  rememberForm();
  $("#prompt").focus();
}

// -- the same request as code -----------------------------------------------------------------

function renderCode(card, entry) {
  const tabs = card.querySelector(".tabs");
  const snippet = card.querySelector(".snippet");
  // The seed the job drew with, so that each snippet makes the same image again.
  const seeds = entry.view && entry.view.seeds;
  const request = { ...entry.request, seed: seeds ? seeds[0] : entry.request.seed };
  const codes = request.edit ? editSnippets(request) : snippets(request);
  tabs.replaceChildren();
  for (const [name, label] of DIALECTS) {
    if (!codes[name]) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.dataset.dialect = name;
    button.addEventListener("click", () => {
      for (const other of tabs.children) other.classList.toggle("active", other === button);
      snippet.textContent = codes[name];
      snippet.dataset.dialect = name;
    });
    tabs.append(button);
  }
  tabs.firstElementChild.click();
}

// The model id each provider spells the chosen tier with (the chosen id for its own provider).
function idFor(provider, request) {
  const found = modelsById.get(request.model);
  if (!found) return null;
  if (found.model.provider === provider) return found.model;
  const candidates = found.tier.models.filter((m) => m.provider === provider);
  // Imagen's own ids first (AIML also names its Gemini models), not a preview, the shortest.
  candidates.sort((a, b) => (a.id.includes("preview") - b.id.includes("preview"))
    || (!a.id.includes("imagen") - !b.id.includes("imagen")) || a.id.length - b.id.length);
  return candidates[0] || null;
}

function sizeOf(model, request) {
  const resolution = model.resolutions.includes(request.resolution) ? request.resolution
    : model.resolutions[0];
  return model.sizes.find((s) => s.aspect_ratio === request.aspect_ratio
    && s.resolution === resolution) || model.sizes[0];
}

function py(value, indent = "") {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return JSON.stringify(value);
  const inner = indent + "    ";
  if (Array.isArray(value)) {
    return `[\n${value.map((v) => `${inner}${py(v, inner)},`).join("\n")}\n${indent}]`;
  }
  const items = Object.entries(value).map(([k, v]) => `${inner}${JSON.stringify(k)}: ${py(v, inner)},`);
  return `{\n${items.join("\n")}\n${indent}}`;
}

function shellQuote(text) { return `'${text.replaceAll("'", "'\\''")}'`; }

function snippets(request) {
  const base = window.location.origin;
  const key = 'os.environ.get("EASEL_API_KEY", "none")';
  const out = {};
  const auth = apiKey() ? `  -H "Authorization: Bearer $EASEL_API_KEY" \\\n` : "";
  out.curl = `id=$(curl -s ${base}/easel/jobs \\\n  -H 'Content-Type: application/json' \\\n${auth}` +
    `  -d ${shellQuote(JSON.stringify(request, null, 2))} \\\n` +
    `  | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')\n\n` +
    `# follow its progress (server-sent events) until it ends:\n` +
    `curl -sN ${auth ? '-H "Authorization: Bearer $EASEL_API_KEY" ' : ""}${base}/easel/jobs/$id/events`;
  const count = (model) => Math.min(request.num_images, model.max_images);
  const loras = request.loras && request.loras.length ? request.loras : undefined;
  // easel's WaveSpeed and Google dialects have no adapter field: the snippet says so.
  const unsent = (dialect) => (loras ? `# Adapters are not sent through the ${dialect} dialect: ` +
    `this runs without ${loraLine(loras)} (curl, Runware and OpenAI send them)\n` : "");
  const negative = (model) => (model.negative_prompt && request.negative_prompt) || undefined;
  const note = (model) => {
    const size = sizeOf(model, request);
    return size.resolution !== request.resolution
      ? `# ${model.id} serves ${size.resolution.toUpperCase()} only: this asks for ${size.width}x${size.height}\n` : "";
  };

  const runware = idFor("runware", request);
  if (runware) {
    const size = sizeOf(runware, request);
    const task = { taskType: "imageInference", model: runware.id, positivePrompt: request.prompt,
      negativePrompt: negative(runware), width: size.width, height: size.height,
      numberResults: count(runware), outputFormat: request.output_format.toUpperCase(),
      outputQuality: request.output_quality, seed: request.seed,
      // Runware's own shape: `model` (the allow-listed name, or an AIR id alias) and weight.
      lora: loras && loras.map((l) => prune({ model: l.name, weight: l.weight })) };
    out.runware = `${note(runware)}import asyncio\nimport os\n\nfrom runware import Runware\n\n\n` +
      `async def main() -> None:\n    client = Runware(api_key=${key}, transport="rest",\n` +
      `                     http_base_url="${base}/v1")\n` +
      `    images = await client.run(${py(prune(task), "    ")})\n    print(images)\n\n\nasyncio.run(main())\n`;
  }
  const wavespeed = idFor("wavespeed", request);
  if (wavespeed) {
    const size = sizeOf(wavespeed, request);
    const input = { prompt: request.prompt, negative_prompt: negative(wavespeed),
      aspect_ratio: size.aspect_ratio, resolution: size.resolution, num_images: count(wavespeed),
      seed: request.seed, output_format: request.output_format };
    out.wavespeed = `${note(wavespeed)}${unsent("WaveSpeed")}import os\n\nimport wavespeed\n\n` +
      `client = wavespeed.Client(api_key=${key}, base_url="${base}")\n` +
      `result = client.run(${JSON.stringify(wavespeed.id)}, ${py(prune(input))})\nprint(result["outputs"])\n`;
  }
  const aiml = idFor("aiml", request);
  if (aiml) {
    const size = sizeOf(aiml, request);
    const extra = { num_images: count(aiml), seed: request.seed, negative_prompt: negative(aiml),
      loras };
    out.aiml = `${note(aiml)}import os\n\nfrom openai import OpenAI\n\n` +
      `client = OpenAI(api_key=${key}, base_url="${base}/v1")\n` +
      `result = client.images.generate(\n    model=${JSON.stringify(aiml.id)},\n` +
      `    prompt=${JSON.stringify(request.prompt)},\n    size="${size.width}x${size.height}",\n` +
      `    output_format="${request.output_format}",\n    response_format="url",\n` +
      `    extra_body=${py(prune(extra), "    ")},  # AIML's fields\n)\n` +
      `print([image.url for image in result.data])\n`;
  }
  const google = idFor("google", request);
  if (google) {
    const size = sizeOf(google, request);
    const config = [`number_of_images=${count(google)}`, `aspect_ratio="${size.aspect_ratio}"`];
    if (!google.id.includes("fast")) config.push(`image_size="${size.resolution.toUpperCase()}"`);
    // Google honours a seed only without its watermark.
    if (request.seed !== undefined) config.push(`seed=${request.seed}`, "add_watermark=False");
    if (negative(google)) config.push(`negative_prompt=${JSON.stringify(negative(google))}`);
    const mime = request.output_format === "png" ? "image/png" : "image/jpeg";
    config.push(`output_mime_type="${mime}"`);
    const webp = request.output_format === "webp" ? "# Google's API has no WEBP output: JPEG instead\n" : "";
    // Vertex mode: google-genai 2.x and 3.x generate images only there, and only there does
    // the SDK pass a seed on. The project and location are any names: easel ignores them.
    out.google = `${note(google)}${webp}${unsent("Google")}${vertexClient(key, base)}` +
      `response = client.models.generate_images(\n    model=${JSON.stringify(google.id)},\n` +
      `    prompt=${JSON.stringify(request.prompt)},\n` +
      `    config=types.GenerateImagesConfig(\n        ${config.join(",\n        ")},\n    ),\n)\n` +
      `for generated in response.generated_images:\n` +
      `    print(generated.image.mime_type, len(generated.image.image_bytes))\n`;
  }
  const gemini = idFor("gemini", request);
  if (gemini) out.gemini = geminiSnippet(gemini, request, key, base, count(gemini), unsent);
  return out;
}

/** An edit as code: the input as photo.png (and the painted area as mask.png, white to
 * repaint) in the folder it runs in, through easel's API, OpenAI's edits and Runware. */
function editSnippets(request) {
  const base = window.location.origin;
  const key = 'os.environ.get("EASEL_API_KEY", "none")';
  const masked = request.edit.masked;
  const files = request.upscale ? "# photo.png: the image to upscale\n"
    : `# photo.png: the image to edit${masked ? "; mask.png: white where it is repainted" : ""}\n`;
  const { edit, ...fields } = request;
  const body = prune({ ...fields, aspect_ratio: undefined, resolution: undefined });
  const auth = apiKey() ? `  -H "Authorization: Bearer $EASEL_API_KEY" \\\n` : "";
  const inline = `python3 -c 'import base64, json, sys; body = json.loads(sys.argv[1]); ` +
    `body["image"] = "data:image/png;base64," + base64.b64encode(open("photo.png", "rb").read()).decode(); ` +
    (masked ? `body["mask"] = "data:image/png;base64," + base64.b64encode(open("mask.png", "rb").read()).decode(); ` : "") +
    `print(json.dumps(body))' ${shellQuote(JSON.stringify(body))}`;
  const out = {};
  out.curl = `${files}${inline} \\\n  | curl -s ${base}/easel/jobs -H 'Content-Type: application/json' \\\n${auth}` +
    `  --data-binary @- \\\n  | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'\n`;
  if (request.upscale) return { ...out, ...upscaleSnippets(request, files, key, base) };
  if (request.outpaint) {  // easel's API: OpenAI's edits have no outpainting
    out.curl = "# OpenAI's edits cannot extend a picture; Runware's outpaint takes margins in " +
      "steps of 64 and the final width and height (docs/runware.md)\n" + out.curl;
    return out;
  }
  const aiml = idFor("aiml", request);
  if (aiml) {
    const extra = prune({ seed: request.seed, strength: request.strength, loras: request.loras });
    out.aiml = `${files}import os\n\nfrom openai import OpenAI\n\n` +
      `client = OpenAI(api_key=${key}, base_url="${base}/v1")\n` +
      `result = client.images.edit(\n    model=${JSON.stringify(aiml.id)},\n` +
      `    image=open("photo.png", "rb"),\n` + (masked ? `    mask=open("mask.png", "rb"),  # white (no alpha): repainted\n` : "") +
      `    prompt=${JSON.stringify(request.prompt)},\n    n=${request.num_images},\n` +
      `    output_format="${request.output_format}",\n    response_format="url",\n` +
      `    extra_body=${py(extra, "    ")},  # easel's strength\n)\n` +
      `print([image.url for image in result.data])\n`;
  }
  const runware = idFor("runware", request);
  if (runware) {
    const task = prune({ taskType: "imageInference", model: runware.id,
      positivePrompt: request.prompt, numberResults: request.num_images,
      outputFormat: request.output_format.toUpperCase(), seed: request.seed,
      strength: request.strength });
    out.runware = runwareFromFiles(files, key, base, task,
      `    task["seedImage"] = data_uri("photo.png")\n` +
      (masked ? `    task["maskImage"] = data_uri("mask.png")\n` : ""));
  }
  return out;
}

/** runware-sdk's REST client running `task` (a dict, printed as Python) once `inputs` (lines
 * of Python) put the image files into it as data URIs. */
function runwareFromFiles(header, key, base, task, inputs) {
  return `${header}import asyncio\nimport base64\nimport os\n\nfrom runware import Runware\n\n\n` +
    `def data_uri(path: str) -> str:\n` +
    `    return "data:image/png;base64," + base64.b64encode(open(path, "rb").read()).decode()\n\n\n` +
    `async def main() -> None:\n    client = Runware(api_key=${key}, transport="rest",\n` +
    `                     http_base_url="${base}/v1")\n` +
    `    task = ${py(task, "    ")}\n${inputs}` +
    `    images = await client.run(task)\n    print(images)\n\n\nasyncio.run(main())\n`;
}

/** google-genai's imports and its client in Vertex mode, where google-genai 2.x and 3.x make
 * and upscale images (the project and location are any names: easel ignores them). */
function vertexClient(key, base) {
  return `import os\n\nfrom google import genai\nfrom google.genai import types\n` +
    `from google.oauth2.credentials import Credentials\n\n` +
    `client = genai.Client(\n    vertexai=True, project="my-project", location="us-central1",\n` +
    `    credentials=Credentials(token=${key}),\n` +
    `    http_options=types.HttpOptions(base_url="${base}"),\n)\n`;
}

/** An upscale of photo.png as code: Runware's upscale task and google-genai's upscale_image
 * (curl on easel's API is the edit's). */
function upscaleSnippets(request, files, key, base) {
  const out = {};
  const runware = idFor("runware", request);
  if (runware) {
    const task = { taskType: "upscale", model: runware.id, upscaleFactor: request.upscale,
      outputFormat: request.output_format.toUpperCase() };
    out.runware = runwareFromFiles(files, key, base, task,
      `    task["inputs"] = {"image": data_uri("photo.png")}\n`);
  }
  const google = idFor("google", request);
  if (google) {
    const mime = request.output_format === "png" ? "image/png" : "image/jpeg";
    const webp = request.output_format === "webp" ? "# Google's API has no WEBP output: JPEG instead\n" : "";
    out.google = `${files}${webp}${vertexClient(key, base)}` +
      `response = client.models.upscale_image(\n    model=${JSON.stringify(google.id)},\n` +
      `    image=types.Image.from_file(location="photo.png"),\n` +
      `    upscale_factor="x${request.upscale}",\n` +
      `    config=types.UpscaleImageConfig(output_mime_type="${mime}"),\n)\n` +
      `for generated in response.generated_images:\n` +
      `    print(generated.image.mime_type, len(generated.image.image_bytes))\n`;
  }
  return out;
}

/** google-genai's generate_content on a Gemini image model of the request's tier. */
function geminiSnippet(model, request, key, base, count, unsent) {
  const size = sizeOf(model, request);
  const image = [`aspect_ratio="${size.aspect_ratio}"`];
  if (model.resolutions.length > 1) image.push(`image_size="${size.resolution.toUpperCase()}"`);
  const config = ['response_modalities=["IMAGE"]', `candidate_count=${count}`];
  if (request.seed !== undefined) config.push(`seed=${request.seed}`);
  config.push(`image_config=types.ImageConfig(${image.join(", ")})`);
  const notes = (size.resolution !== request.resolution
    ? `# ${model.id} serves ${size.resolution.toUpperCase()} only: this asks for ${size.width}x${size.height}\n` : "") +
    (request.negative_prompt ? "# The Gemini API has no negative prompt: it is left out\n" : "") +
    (request.output_format !== "png" ? "# The Gemini API answers with PNG\n" : "") + unsent("Gemini");
  return `${notes}import os\n\nfrom google import genai\nfrom google.genai import types\n\n` +
    `client = genai.Client(api_key=${key},\n` +
    `                      http_options=types.HttpOptions(base_url="${base}"))\n` +
    `response = client.models.generate_content(\n    model=${JSON.stringify(model.id)},\n` +
    `    contents=${JSON.stringify(request.prompt)},\n` +
    `    config=types.GenerateContentConfig(\n        ${config.join(",\n        ")},\n    ),\n)\n` +
    `for candidate in response.candidates:\n    for part in candidate.content.parts:\n` +
    `        if part.inline_data:\n            print(part.inline_data.mime_type, len(part.inline_data.data))\n`;
}

function prune(object) {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined && v !== null));
}

// -- start ------------------------------------------------------------------------------------

async function start() {
  try {
    const response = await api("/easel/info");
    if (response.ok) {
      const info = await response.json();
      const real = info.tiers.filter((t) => t.weights === "present").map((t) => t.label);
      const standIns = info.tiers.filter((t) => t.stand_in).map((t) => t.label);
      $("#server").textContent = `easel ${info.version} · real weights: ` +
        `${real.length ? real.join(", ") : "none"}` +
        (standIns.length ? ` · drawn by stand-ins: ${standIns.join(", ")}` : "");
    }
    await loadCatalog();
    renderHistory();
  } catch (error) {
    if (!(error instanceof KeyNeeded)) showError({ message: `Could not load the catalog: ${error.message}` });
  }
}

/** Every second, the waiting or running time of unfinished jobs (no event comes while a job
 * waits in the queue). */
function tickTimings() {
  const entries = new Map(history().map((e) => [e.id, e]));
  for (const card of document.querySelectorAll(".job[data-status=queued], .job[data-status=processing]")) {
    const entry = entries.get(card.dataset.jobId);
    if (entry && entry.view) card.querySelector(".job-timing").textContent = timingLine(entry.view);
  }
}

function bind() {
  bindKey();
  bindEdit();
  setInterval(tickTimings, 1000);
  $("#form").addEventListener("submit", generate);
  $("#examples").replaceChildren(...EXAMPLES.map((text) => {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.textContent = text;
    chip.addEventListener("click", () => { $("#prompt").value = text; $("#prompt").focus(); });
    return chip;
  }));
  $("#form").addEventListener("keydown", (event) => {  // Ctrl+Enter (Cmd+Enter) generates
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("#form").requestSubmit();
    }
  });
  $("#model").addEventListener("change", () => { onModelChange(); rememberForm(); });
  for (const name of ["aspect_ratio", "resolution", "num_images", "output_quality"]) {
    $(`#${name}`).addEventListener("input", updateSizeLine);
  }
  $("#clear-history").addEventListener("click", () => {
    for (const controller of following.values()) controller.abort();
    saveHistory([]);
    $("#jobs").replaceChildren();
    $("#empty").hidden = false;
  });
}

bind();
start();
