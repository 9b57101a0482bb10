// qinggan web page: single and batch sentiment analysis against the qinggan HTTP API.
// No framework, no inline code (the server sends a strict CSP); user text is only ever
// rendered with textContent.

import { showExplanation, strongestPhrase } from "./explain.js";

const HISTORY_KEY = "qinggan.history.v1";
const API_KEY_KEY = "qinggan.apiKey";
const HISTORY_LIMIT = 50;
const DEFAULT_LIMITS = Object.freeze({ maxTextChars: 512, maxBatchTexts: 64, maxBodyBytes: 1_048_576 });
const LABELS = {
  Positive: { emoji: "😄", zh: "正面", tone: "positive" },
  Negative: { emoji: "😠", zh: "负面", tone: "negative" },
  Neutral: { emoji: "😐", zh: "中性", tone: "neutral" },
};

const $ = (id) => document.getElementById(id);
const limits = { ...DEFAULT_LIMITS };
let lastBatchRows = [];

// ---------- small helpers ----------

/** Length in Unicode code points, as the server (Python len) counts it. */
const charLength = (text) => Array.from(text).length;

const percent = (confidence) => `${(confidence * 100).toFixed(1)}%`;

export function labelInfo(label, labelZh) {
  const known = LABELS[label];
  return {
    emoji: known ? known.emoji : "🤔",
    zh: labelZh || (known ? known.zh : label),
    en: label,
    tone: known ? known.tone : "neutral",
  };
}

/** An element with optional class and text (never HTML). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Hook for add-ons such as feedback.js: a ``qinggan:NAME`` event on the document. */
function notify(name, detail) {
  document.dispatchEvent(new CustomEvent(`qinggan:${name}`, { detail }));
}

function showAlert(box, message) {
  box.textContent = message;
  box.hidden = !message;
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function apiKey() {
  try {
    return localStorage.getItem(API_KEY_KEY) || "";
  } catch {
    return "";
  }
}

/** Call the API; resolve to the JSON body or throw an ApiError with a user-facing message. */
export async function api(path, body) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method: body === undefined ? "GET" : "POST", headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", "无法连接服务器，请检查服务是否在运行。Cannot reach the server: is it running?");
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = (payload && payload.error) || {};
    throw new ApiError(response.status, error.code || `http_${response.status}`,
      error.message || response.statusText || "", response.headers.get("Retry-After"));
  }
  if (payload === null) throw new ApiError(response.status, "bad_response", "服务器返回了无效的响应。Invalid response from the server.");
  return payload;
}

/** A clear, bilingual explanation of an API error. */
export function describeError(error) {
  if (!(error instanceof ApiError)) return `出错了 Something went wrong: ${error}`;
  const detail = error.message ? ` (${error.message})` : "";
  switch (error.status) {
    case 0:
      return error.message;
    case 400:
      return `请求无效 Invalid request${detail}`;
    case 401:
      return `需要有效的 API 密钥：请在“设置”中填写。A valid API key is required: enter it under Settings.${detail}`;
    case 413:
      if (error.code === "body_too_large") {
        return `请求过大：最多 ${limits.maxBodyBytes} 字节。Request too large: at most ${limits.maxBodyBytes} bytes.${detail}`;
      }
      return `文本过长：每条最多 ${limits.maxTextChars} 个字符。Text too long: at most ${limits.maxTextChars} characters per text.${detail}`;
    case 422:
      return `请求格式有误 Malformed request${detail}`;
    case 429:
    case 503: {
      const wait = error.retryAfter ? ` ${error.retryAfter} 秒后重试 Retry in ${error.retryAfter} s.` : "";
      return `服务器繁忙，请稍后再试。Server busy, please try again later.${wait}${detail}`;
    }
    case 504:
      return `请求超时，请重试。The request timed out, please retry.${detail}`;
    default:
      return `服务器错误 Server error ${error.status}${detail}`;
  }
}

/** Read limits from GET /info, tolerating either flat or nested ("limits") layouts. */
function applyInfo(info) {
  const sources = [info, info.limits || {}, info.settings || {}];
  const pick = (...names) => {
    for (const source of sources) {
      for (const name of names) {
        const value = source[name];
        if (Number.isInteger(value) && value > 0) return value;
      }
    }
    return undefined;
  };
  limits.maxTextChars = pick("max_text_chars", "max_chars") || DEFAULT_LIMITS.maxTextChars;
  limits.maxBatchTexts = pick("max_batch_texts", "max_texts") || DEFAULT_LIMITS.maxBatchTexts;
  limits.maxBodyBytes = pick("max_body_bytes") || DEFAULT_LIMITS.maxBodyBytes;
  const model = info.model && typeof info.model === "object" ? info.model : info;
  const name = model.name || (typeof info.model === "string" ? info.model : "");
  const parts = ["qinggan", info.version && `v${info.version}`, name && `模型 model: ${name}`,
    model.variant].filter(Boolean);
  $("model-info").textContent = parts.join(" · ");
}

async function loadInfo() {
  const status = $("server-status");
  const text = $("server-status-text");
  try {
    const info = await api("info");
    applyInfo(info);
    notify("info", info);
    status.dataset.state = "ok";
    text.textContent = "服务就绪 Ready";
  } catch (error) {
    status.dataset.state = error.status === 401 ? "auth" : "error";
    text.textContent = error.status === 401 ? "需要 API 密钥 API key required" : "无法连接 Offline";
    if (error.status === 401) $("settings").open = true;
  }
  updateCharCount();
}

// ---------- single analysis ----------

function updateCharCount() {
  const count = charLength($("text").value);
  const counter = $("char-count");
  counter.textContent = `${count} / ${limits.maxTextChars}`;
  counter.classList.toggle("over", count > limits.maxTextChars);
  counter.title = count > limits.maxTextChars ? "超出长度上限 Over the length limit" : "";
}

function renderResult(text, prediction) {
  const info = labelInfo(prediction.label, prediction.label_zh);
  const box = $("result");
  box.dataset.tone = info.tone;
  $("result-emoji").textContent = info.emoji;
  $("result-label").textContent = `${info.zh} `;
  $("result-label").append(el("span", "en", info.en));
  $("result-confidence").textContent = `置信度 Confidence ${percent(prediction.confidence)}`;
  const value = Math.round(prediction.confidence * 1000) / 10;
  const bar = $("confidence-bar");
  bar.setAttribute("aria-valuenow", String(value));
  bar.setAttribute("aria-valuetext", percent(prediction.confidence));
  $("confidence-fill").style.width = `${value}%`;
  const note = $("result-note");
  note.hidden = !prediction.truncated;
  note.textContent = prediction.truncated ? "文本超过模型长度，已截断后分析。Input was truncated to the model's length limit." : "";
  showExplanation($("result-text"), $("result-label"), text, prediction.explanation);
  box.hidden = false;
  notify("result", { text, prediction, element: box });
}

async function analyzeSingle(event) {
  event.preventDefault();
  const textarea = $("text");
  const text = textarea.value;
  const errorBox = $("single-error");
  if (!text.trim()) {
    showAlert(errorBox, "请输入要分析的文本。Please enter some text to analyze.");
    textarea.focus();
    return;
  }
  const button = $("analyze");
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  showAlert(errorBox, "");
  try {
    const prediction = await api("analyze", { text, explain: true });
    renderResult(text, prediction);
    addHistory(text, prediction);
  } catch (error) {
    $("result").hidden = true;
    showAlert(errorBox, describeError(error));
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

// ---------- history (localStorage) ----------

function readHistory() {
  try {
    const items = JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
    if (!Array.isArray(items)) return [];
    return items.filter((item) => item && typeof item.text === "string").slice(0, HISTORY_LIMIT);
  } catch {
    return [];
  }
}

function writeHistory(items) {
  try {
    localStorage.setItem(HISTORY_KEY, JSON.stringify(items.slice(0, HISTORY_LIMIT)));
  } catch {
    // Storage full or disabled: history is a convenience, analysis still works.
  }
}

function addHistory(text, prediction) {
  const entry = {
    text,
    label: prediction.label,
    label_zh: prediction.label_zh,
    confidence: prediction.confidence,
    at: new Date().toISOString(),
  };
  writeHistory([entry, ...readHistory()]);
  renderHistory();
}

export function renderHistory() {
  const items = readHistory();
  const list = $("history-list");
  list.replaceChildren(...items.map((item) => {
    const info = labelInfo(item.label, item.label_zh);
    const row = el("li", `history-item tone-${info.tone}`);
    const button = el("button", "history-load");
    button.type = "button";
    button.title = "重新载入这条文本 Load this text again";
    button.append(el("span", "history-emoji", info.emoji), el("span", "history-text", item.text));
    button.addEventListener("click", () => {
      $("text").value = item.text;
      updateCharCount();
      $("text").focus();
    });
    const meta = el("span", "history-meta");
    meta.append(el("span", "history-label", info.zh), el("span", "history-conf", percent(Number(item.confidence) || 0)));
    const when = new Date(item.at);
    if (!Number.isNaN(when.getTime())) {
      const time = el("time", "history-time", when.toLocaleString());
      time.dateTime = item.at;
      meta.append(time);
    }
    row.append(button, meta);
    notify("history-item", { text: item.text, prediction: item, element: row });
    return row;
  }));
  $("history-empty").hidden = items.length > 0;
  $("history-clear").disabled = items.length === 0;
}

// ---------- batch mode ----------

function batchLines() {
  return $("batch-text").value.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
}

function updateBatchCount() {
  const count = batchLines().length;
  const counter = $("batch-count");
  counter.textContent = `${count} 条 `;
  counter.append(el("span", "en", count === 1 ? "line" : "lines"));
}

async function analyzeBatch(event) {
  event.preventDefault();
  const lines = batchLines();
  const errorBox = $("batch-error");
  showAlert(errorBox, "");
  if (lines.length === 0) {
    showAlert(errorBox, "请至少输入一行文本。Please enter at least one line.");
    return;
  }
  const rows = lines.map((text) => ({ text, result: null, error: null }));
  const sendable = [];
  rows.forEach((row, index) => {
    if (charLength(row.text) > limits.maxTextChars) {
      row.error = `过长 Too long (>${limits.maxTextChars})`;
    } else {
      sendable.push(index);
    }
  });
  const chunks = chunkTexts(sendable.map((index) => rows[index].text)).map(
    (chunk) => chunk.map((position) => sendable[position]));
  const button = $("batch-analyze");
  const progress = $("batch-progress");
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  let done = 0;
  try {
    for (const chunk of chunks) {
      progress.textContent = `${done} / ${sendable.length}`;
      const payload = await api("v1/analyze", { texts: chunk.map((index) => rows[index].text), explain: true });
      const results = Array.isArray(payload.results) ? payload.results : [];
      chunk.forEach((index, offset) => {
        rows[index].result = results[offset] || null;
        if (!results[offset]) rows[index].error = "无结果 No result";
      });
      done += chunk.length;
    }
    progress.textContent = "";
  } catch (error) {
    progress.textContent = `${done} / ${sendable.length}`;
    showAlert(errorBox, describeError(error));
    rows.forEach((row) => {
      if (!row.result && !row.error) row.error = "未完成 Not analyzed";
    });
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
  renderBatch(rows);
}

/**
 * Split texts into requests the server accepts: at most max_batch_texts texts each, and a
 * JSON body under max_body_bytes. Returns lists of positions into ``texts``.
 */
function chunkTexts(texts) {
  const encoder = new TextEncoder();
  const budget = limits.maxBodyBytes - 64; // room for {"texts":[]}
  const chunks = [];
  let current = [];
  let bytes = 0;
  texts.forEach((text, position) => {
    const size = encoder.encode(JSON.stringify(text)).length + 1;
    if (current.length && (current.length >= limits.maxBatchTexts || bytes + size > budget)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(position);
    bytes += size;
  });
  if (current.length) chunks.push(current);
  return chunks;
}

function renderBatch(rows) {
  lastBatchRows = rows;
  const body = $("batch-body");
  body.replaceChildren(...rows.map((row, index) => {
    const tr = el("tr");
    const textCell = el("td", "text-cell");
    const clamped = el("div", "clamp", row.text);
    clamped.title = row.text;
    textCell.append(clamped);
    tr.append(el("td", "num", String(index + 1)), textCell);
    if (row.result) {
      const info = labelInfo(row.result.label, row.result.label_zh);
      const label = el("td", `label-cell tone-${info.tone}`);
      label.append(el("span", "tone-emoji", info.emoji), ` ${info.zh} `, el("span", "en", info.en));
      const phrase = strongestPhrase(row.result);
      if (phrase) label.append(phrase);
      tr.append(label, el("td", "num", percent(row.result.confidence)));
    } else {
      const cell = el("td", "error-cell", row.error || "");
      cell.colSpan = 2;
      tr.append(cell);
    }
    return tr;
  }));
  $("batch-summary").replaceChildren(...batchSummary(rows));
  $("batch-results").hidden = rows.length === 0;
}

// ---------- any number of labels (a model adapted with a third label, e.g. 中性) ----------

/** Labels in the order the batch shows them: Positive, Negative, Neutral, then any others. */
function summaryLabels(rows) {
  const seen = new Set(rows.filter((row) => row.result).map((row) => row.result.label));
  const known = Object.keys(LABELS).filter((label) => label !== "Neutral" || seen.has(label));
  return [...known, ...[...seen].filter((label) => !(label in LABELS)).sort()];
}

/** "😄 n · 😠 m (· 😐 k) (· ⚠️ failed)": a count per label, then the failed rows if any. */
function batchSummary(rows) {
  const counts = summaryLabels(rows).map((label) => [
    labelInfo(label).emoji,
    rows.filter((row) => row.result && row.result.label === label).length,
  ]);
  const failed = rows.filter((row) => !row.result).length;
  if (failed) counts.push(["⚠️", failed]);
  return counts.flatMap(([emoji, count], index) => [index ? " · " : "", el("span", "tone-emoji", emoji), ` ${count}`]);
}

/** One RFC 4180 field; cells that a spreadsheet would run as a formula get a leading quote. */
function csvField(value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) || text !== text.trim() ? `"${text.replace(/"/g, '""')}"` : text;
}

function batchCsv(rows) {
  const header = ["text", "label", "label_zh", "confidence", "error"];
  const lines = [header, ...rows.map((row) => [
    row.text,
    row.result ? row.result.label : "",
    row.result ? row.result.label_zh : "",
    row.result ? Number(row.result.confidence).toFixed(4) : "",
    row.result ? "" : row.error || "",
  ])];
  // UTF-8 BOM so Excel detects the encoding of Chinese text; CRLF per RFC 4180.
  return `\uFEFF${lines.map((fields) => fields.map(csvField).join(",")).join("\r\n")}\r\n`;
}

function downloadCsv() {
  if (lastBatchRows.length === 0) return;
  const blob = new Blob([batchCsv(lastBatchRows)], { type: "text/csv;charset=utf-8" });
  const url = URL.createObjectURL(blob);
  const link = el("a");
  link.href = url;
  link.download = `qinggan-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-")}.csv`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ---------- tabs, settings, wiring ----------

function selectTab(name) {
  for (const tabName of ["single", "batch"]) {
    const selected = tabName === name;
    const tab = $(`tab-${tabName}`);
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(`panel-${tabName}`).hidden = !selected;
  }
  (name === "single" ? $("text") : $("batch-text")).focus();
}

function onTabKey(event) {
  if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
    const next = event.currentTarget.id === "tab-single" ? "batch" : "single";
    selectTab(next);
    $(`tab-${next}`).focus();
  }
}

function saveApiKey(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  try {
    if (key) localStorage.setItem(API_KEY_KEY, key);
    else localStorage.removeItem(API_KEY_KEY);
  } catch {
    // Storage disabled: nothing to persist.
  }
  loadInfo();
}

function submitOnCtrlEnter(form) {
  return (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  };
}

function init() {
  $("api-key").value = apiKey();
  $("api-key-form").addEventListener("submit", saveApiKey);
  $("single-form").addEventListener("submit", analyzeSingle);
  $("batch-form").addEventListener("submit", analyzeBatch);
  $("text").addEventListener("input", updateCharCount);
  $("text").addEventListener("keydown", submitOnCtrlEnter($("single-form")));
  $("batch-text").addEventListener("input", updateBatchCount);
  $("batch-text").addEventListener("keydown", submitOnCtrlEnter($("batch-form")));
  $("batch-download").addEventListener("click", downloadCsv);
  $("history-clear").addEventListener("click", () => {
    try {
      localStorage.removeItem(HISTORY_KEY);
    } catch {
      // Nothing stored.
    }
    renderHistory();
  });
  for (const tab of ["single", "batch"]) {
    $(`tab-${tab}`).addEventListener("click", () => selectTab(tab));
    $(`tab-${tab}`).addEventListener("keydown", onTabKey);
  }
  renderHistory();
  updateCharCount();
  updateBatchCount();
  loadInfo();
}

init();
