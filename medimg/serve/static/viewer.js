// medimg serve's page: upload, poll the job, show the labels over the image with NiiVue.
// Everything comes from this service: NiiVue is /static/niivue.umd.js (npm, installed at setup).
"use strict";

const PALETTE = [[0, 0, 0], [255, 0, 0], [0, 200, 0], [0, 90, 255], [255, 220, 0],
  [255, 0, 255], [0, 220, 220], [255, 128, 0], [128, 0, 255]];
const IMAGE_NAMES = { "nifti-gz": "image.nii.gz", nifti: "image.nii", nrrd: "image.nrrd", mha: "image.mha" };
const $ = (id) => document.getElementById(id);
const state = { models: {}, nv: null, urls: [] };
window.medimgViewer = state; // for tests and the curious: state.nv is the NiiVue instance

function headers() {
  const token = $("token").value.trim() || sessionStorage.getItem("medimg-token") || "";
  if (token) sessionStorage.setItem("medimg-token", token);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (_) { /* not JSON */ }
    const error = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    error.status = response.status;
    throw error;
  }
  return response;
}

function show(id, visible) { $(id).hidden = !visible; }
function setStatus(text) { $("status").textContent = text; }
function fail(message) {
  $("error").textContent = message;
  show("error", true);
  setStatus("failed");
  document.body.dataset.state = "failed";
}

async function loadModels() {
  try {
    const { models } = await (await api("/v1/models")).json();
    const select = $("model");
    select.replaceChildren();
    for (const model of models) {
      state.models[model.name] = model;
      const option = document.createElement("option");
      option.value = model.name;
      option.textContent = `${model.name} (${model.task})`;
      select.append(option);
    }
    document.body.dataset.models = "ready";
  } catch (error) {
    if (error.status === 401) $("token").focus();
    fail(`cannot list the models: ${error.message}`);
  }
}

async function submit(file) {
  show("error", false);
  show("job", true);
  show("result", false);
  document.body.dataset.state = "uploading";
  setStatus("uploading");
  $("progress").removeAttribute("value");
  const form = new FormData();
  form.append("file", file);
  form.append("model", $("model").value);
  let job;
  try {
    job = await (await api("/v1/jobs", { method: "POST", body: form })).json();
  } catch (error) {
    fail(`upload refused: ${error.message}`);
    return;
  }
  document.body.dataset.job = job.id;
  await poll(job.id, file);
}

async function poll(jobId, file) {
  for (;;) {
    let job;
    try {
      job = await (await api(`/v1/jobs/${jobId}`)).json();
    } catch (error) {
      fail(`lost the job: ${error.message}`);
      return;
    }
    const { done, total } = job.progress;
    setStatus(`${job.status}${total ? ` (${done} of ${total} windows)` : ""}`);
    if (total) { $("progress").max = total; $("progress").value = done; }
    document.body.dataset.state = job.status;
    if (job.status === "failed") { fail(job.error || "the job failed"); return; }
    if (job.status === "done") { await showResult(job, file); return; }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

function labelColormap(model, maxLabel) {
  const outputs = (model && model.outputs) || {};
  const cmap = { R: [], G: [], B: [], A: [], I: [], labels: [] };
  for (let i = 0; i <= maxLabel; i++) {
    const [r, g, b] = PALETTE[i % PALETTE.length];
    cmap.R.push(r); cmap.G.push(g); cmap.B.push(b); cmap.A.push(i === 0 ? 0 : 255); cmap.I.push(i);
    cmap.labels.push(outputs[i] || outputs[String(i)] || (i === 0 ? "background" : `label ${i}`));
  }
  return cmap;
}

function fillTable(job) {
  const body = $("volumes").querySelector("tbody");
  body.replaceChildren();
  const labels = (job.findings && job.findings.labels) || null;
  if (labels && typeof labels === "object") {
    for (const [name, record] of Object.entries(labels)) {
      const row = document.createElement("tr");
      const cells = [[record.value, ""], [name, ""], [Number(record.volume_ml).toFixed(2), "num"]];
      for (const [text, cls] of cells) {
        const cell = document.createElement("td");
        cell.textContent = String(text);
        if (cls) cell.className = cls;
        row.append(cell);
      }
      body.append(row);
    }
  }
  $("findings").textContent = JSON.stringify(job.findings, null, 2);
  show("volumes", Boolean(labels));
  show("findings", !labels);
}

async function showResult(job, file) {
  const model = state.models[job.model];
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls = [];
  const volumes = [];
  if (IMAGE_NAMES[job.input_kind]) {
    const imageUrl = URL.createObjectURL(file);
    state.urls.push(imageUrl);
    volumes.push({ url: imageUrl, name: IMAGE_NAMES[job.input_kind] });
  } else if (job.results.includes("image")) {
    // a DICOM zip: the service read the series and wrote it as NIfTI on the labels' grid
    const image = await (await api(`/v1/jobs/${job.id}/image`)).blob();
    const imageUrl = URL.createObjectURL(image);
    state.urls.push(imageUrl);
    volumes.push({ url: imageUrl, name: "image.nii.gz" });
  }
  if (job.results.includes("seg")) {
    const seg = await (await api(`/v1/jobs/${job.id}/result?format=seg`)).blob();
    const segUrl = URL.createObjectURL(seg);
    state.urls.push(segUrl);
    $("download-seg").href = segUrl;
    $("download-seg").download = `${job.id}_labels.seg.dcm`;
  }
  show("seg-link", job.results.includes("seg"));
  const findings = await (await api(`/v1/jobs/${job.id}/result?format=json`)).blob();
  const jsonUrl = URL.createObjectURL(findings);
  state.urls.push(jsonUrl);
  $("download-json").href = jsonUrl;
  $("download-json").download = `${job.id}_findings.json`;
  let labelsUrl = null;
  if (job.results.some((name) => name.includes("label"))) {
    const labels = await (await api(`/v1/jobs/${job.id}/result`)).blob();
    labelsUrl = URL.createObjectURL(labels);
    state.urls.push(labelsUrl);
    $("download-nifti").href = labelsUrl;
    $("download-nifti").download = `${job.id}_labels.nii.gz`;
    volumes.push({ url: labelsUrl, name: "labels.nii.gz", opacity: 0.6 });
  }
  show("download-nifti", labelsUrl !== null);
  fillTable(job);
  show("result", true);
  await render(volumes, model);
  setStatus("done");
  document.body.dataset.state = "shown";
}

async function render(volumes, model) {
  if (!state.nv) {
    state.nv = new niivue.Niivue({ backColor: [0, 0, 0, 1], show3Dcrosshair: true, isResizeCanvas: false });
    await state.nv.attachTo("viewer");
  }
  const nv = state.nv;
  await nv.loadVolumes(volumes);
  const labels = nv.volumes[nv.volumes.length - 1];
  if (volumes.length && volumes[volumes.length - 1].name === "labels.nii.gz") {
    labels.setColormapLabel(labelColormap(model, Math.max(1, Math.round(labels.global_max || 1))));
    labels.opacity = 0.6;
  }
  nv.opts.multiplanarShowRender = niivue.SHOW_RENDER.ALWAYS;
  nv.setSliceType(nv.sliceTypeMultiplanar);
  nv.updateGLVolume();
}

function setupDrop() {
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const [file] = event.dataTransfer.files;
    if (file) submit(file);
  });
  $("file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) submit(file);
  });
  $("token").value = sessionStorage.getItem("medimg-token") || "";
  $("token").addEventListener("change", () => { show("error", false); loadModels(); });
}

setupDrop();
loadModels();
