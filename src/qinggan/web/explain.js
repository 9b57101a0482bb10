// Explanations on the page: the clauses and phrases behind an answer, highlighted.
// The API counts offsets in Unicode code points (Python's str); JavaScript strings count
// UTF-16 units, so 😀 or 𠀀 before a span would shift it by one. Offsets are converted
// here, once, and user text only ever becomes text nodes (never HTML).

/** UTF-16 offset of every code point boundary: result[i] is where code point i starts. */
export function utf16Offsets(text) {
  const offsets = [0];
  let position = 0;
  for (const char of text) {
    position += char.length;
    offsets.push(position);
  }
  return offsets;
}

const scoreText = (score) => `${score > 0 ? "+" : ""}${score.toFixed(2)}`;
const tone = (score) => (score > 0 ? "pos" : score < 0 ? "neg" : "neutral");

function spansOf(explanation, level) {
  return (explanation && Array.isArray(explanation.spans) ? explanation.spans : [])
    .filter((span) => span.level === level && Number.isInteger(span.start) && Number.isInteger(span.end))
    .sort((a, b) => a.start - b.start);
}

function highlight(tag, className, span, label) {
  const node = document.createElement(tag);
  node.className = `${className} xp-${tone(span.score)}`;
  node.style.setProperty("--xp-strength", String(Math.min(1, Math.abs(span.score))));
  node.dataset.score = scoreText(span.score);
  node.title = `${label} ${scoreText(span.score)}`;
  node.tabIndex = 0; // the score shows on focus as on hover
  return node;
}

/** Append text[start:end) (UTF-16 units) to parent, phrases inside it wrapped in <mark>. */
function appendWithPhrases(parent, text, start, end, phrases, offsets) {
  let cursor = start;
  for (const phrase of phrases) {
    const a = Math.max(offsets[phrase.start], start);
    const b = Math.min(offsets[phrase.end], end);
    if (a < cursor || b <= a) continue;
    if (a > cursor) parent.append(document.createTextNode(text.slice(cursor, a)));
    const mark = highlight("mark", "xp-phrase", phrase, "短语 phrase");
    mark.textContent = text.slice(a, b);
    parent.append(mark);
    cursor = b;
  }
  if (end > cursor) parent.append(document.createTextNode(text.slice(cursor, end)));
}

/** Nodes for ``text`` with its clauses and phrases highlighted. */
export function explainedNodes(text, explanation) {
  const offsets = utf16Offsets(text);
  const size = offsets.length - 1;
  const valid = (span) => span.start >= 0 && span.end <= size && span.start < span.end;
  const clauses = spansOf(explanation, "clause").filter(valid);
  const phrases = spansOf(explanation, "phrase").filter(valid);
  const nodes = document.createDocumentFragment();
  let cursor = 0;
  for (const clause of clauses) {
    const a = offsets[clause.start];
    const b = offsets[clause.end];
    if (a < cursor) continue;
    if (a > cursor) appendWithPhrases(nodes, text, cursor, a, phrases, offsets);
    const node = highlight("span", "xp-clause", clause, "分句 clause");
    appendWithPhrases(node, text, a, b, phrases, offsets);
    nodes.append(node);
    cursor = b;
  }
  appendWithPhrases(nodes, text, cursor, text.length, phrases, offsets);
  return nodes;
}

/** Show an answer's explanation: highlights in ``textBox``, a mixed badge in ``badgeHost``. */
export function showExplanation(textBox, badgeHost, text, explanation) {
  if (!explanation) {
    textBox.textContent = text;
  } else {
    textBox.replaceChildren(explainedNodes(text, explanation));
  }
  const old = badgeHost.querySelector(".xp-badge");
  if (old) old.remove();
  if (explanation && explanation.mixed) badgeHost.append(mixedBadge());
}

function mixedBadge() {
  const badge = document.createElement("span");
  badge.className = "xp-badge";
  badge.textContent = "混合 mixed";
  badge.title = "褒贬兼有 Praise and blame in one review";
  return badge;
}

/** The strongest phrase of a batch-table row's result (a node), or null. */
export function strongestPhrase(result) {
  const explanation = result && result.explanation;
  const phrases = spansOf(explanation, "phrase");
  if (!phrases.length) return null;
  const best = phrases.reduce((a, b) => (Math.abs(b.score) > Math.abs(a.score) ? b : a));
  const line = document.createElement("div");
  line.className = "xp-row";
  const mark = highlight("mark", "xp-phrase", best, "最强短语 strongest phrase");
  mark.textContent = best.text;
  line.append(mark);
  if (explanation.mixed) line.append(" ", mixedBadge());
  return line;
}
