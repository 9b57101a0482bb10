// qinggan web page: "纠正 Correct" on each result and history item, when the server stores
// corrections (GET /info says "feedback": true). One click sends the other label (with more
// than two labels, the click offers them) to POST /v1/feedback; the item then shows what it
// was corrected to. User text is only ever rendered with textContent.

import { api, describeError, el, labelInfo, renderHistory } from "./app.js";

const CORRECTED_KEY = "qinggan.corrected.v1";
const CORRECTED_LIMIT = 200;

const state = { enabled: false, labels: [], displayLabels: {}, lastResult: null };

function readCorrected() {
  try {
    const map = JSON.parse(localStorage.getItem(CORRECTED_KEY) || "{}");
    return map && typeof map === "object" && !Array.isArray(map) ? map : {};
  } catch {
    return {};
  }
}

function remember(text, label) {
  const map = readCorrected();
  delete map[text];
  map[text] = label; // newest last, so the oldest are dropped first
  const entries = Object.entries(map).slice(-CORRECTED_LIMIT);
  try {
    localStorage.setItem(CORRECTED_KEY, JSON.stringify(Object.fromEntries(entries)));
  } catch {
    // Storage full or disabled: the correction is stored on the server all the same.
  }
}

function labelName(label) {
  const info = labelInfo(label, state.displayLabels[label]);
  return `${info.zh} ${info.en}`;
}

function correctedBadge(label) {
  return el("span", "feedback-done", `已纠正 Corrected → ${labelName(label)}`);
}

async function send(text, prediction, label, box) {
  const status = box.querySelector(".feedback-error");
  box.querySelectorAll("button").forEach((button) => { button.disabled = true; });
  status.hidden = true;
  try {
    await api("v1/feedback", {
      text,
      label,
      predicted: prediction.label,
      confidence: Number.isFinite(prediction.confidence) ? prediction.confidence : undefined,
    });
    remember(text, label);
    renderHistory();
    if (state.lastResult && state.lastResult.text === text) decorate(state.lastResult);
  } catch (error) {
    status.textContent = `纠正未保存 Correction not saved: ${describeError(error)}`;
    status.hidden = false;
    box.querySelectorAll("button").forEach((button) => { button.disabled = false; });
  }
}

function choices(text, prediction, box) {
  const others = state.labels.filter((label) => label !== prediction.label);
  const row = el("span", "feedback-choices");
  for (const label of others) {
    const button = el("button", "feedback-choice", labelName(label));
    button.type = "button";
    button.addEventListener("click", () => send(text, prediction, label, box));
    row.append(button);
  }
  return row;
}

/** Put the correction control (or the "corrected" mark) into one result or history item. */
function decorate({ text, prediction, element }) {
  element.querySelector(":scope > .feedback")?.remove();
  if (!state.enabled || !prediction || state.labels.length < 2) return;
  const box = el("div", "feedback");
  const error = el("p", "feedback-error");
  error.setAttribute("role", "alert");
  error.hidden = true;
  const corrected = readCorrected()[text];
  if (corrected) {
    box.append(correctedBadge(corrected));
  } else {
    const others = state.labels.filter((label) => label !== prediction.label);
    const button = el("button", "feedback-correct", "纠正 Correct");
    button.type = "button";
    button.title = others.length === 1
      ? `标记为 Mark as ${labelName(others[0])}`
      : "选择正确的标签 Choose the right label";
    button.addEventListener("click", () => {
      if (others.length === 1) send(text, prediction, others[0], box);
      else button.replaceWith(choices(text, prediction, box));
    });
    box.append(button);
  }
  box.append(error);
  element.append(box);
}

document.addEventListener("qinggan:info", (event) => {
  const info = event.detail || {};
  const model = info.model && typeof info.model === "object" ? info.model : {};
  const labels = Array.isArray(model.labels) ? model.labels.filter((l) => typeof l === "string") : [];
  const display = Array.isArray(model.display_labels) ? model.display_labels : [];
  state.enabled = info.feedback === true && labels.length >= 2;
  state.labels = labels;
  state.displayLabels = Object.fromEntries(labels.map((label, i) => [label, display[i]]));
  renderHistory();
  if (state.lastResult) decorate(state.lastResult);
});

document.addEventListener("qinggan:result", (event) => {
  state.lastResult = event.detail;
  decorate(event.detail);
});

document.addEventListener("qinggan:history-item", (event) => decorate(event.detail));
