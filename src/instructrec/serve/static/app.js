// The instructrec web page. Plain JS, no build step. Every piece of text that comes from the
// user or the catalogue is put on the page with textContent (never parsed as markup), so a title such
// as <script>alert(1)</script> shows as text.
"use strict";

const $ = (id) => document.getElementById(id);
const picked = []; // [{item_id, title}], oldest first
// The conversation so far: [{request, items: [item ids], titles}], oldest first. It lives on the
// page only; every refinement sends it back, so the server keeps no state per user.
let turns = [];
let maxTurns = 8;
let searchTimer = null;
let searchSeq = 0;
let readyText = "ready";

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fmt(x) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(4);
}

// An API error body as one readable line: our `message`, a string `detail`, or pydantic's list.
function errorText(status, body) {
  if (body && typeof body.message === "string" && body.message) return body.message;
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
  return "HTTP " + status;
}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error("cannot reach the server (" + err.message + ")");
  }
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) throw new Error(errorText(response.status, body));
  return body;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function who() {
  return document.querySelector('input[name="who"]:checked').value;
}

function onWhoChange() {
  $("user-panel").hidden = who() !== "user";
  $("history-panel").hidden = who() !== "history";
}

async function lookUpUser() {
  const id = $("user-id").value.trim();
  const list = $("user-recent");
  list.replaceChildren();
  $("user-summary").textContent = "";
  if (!id) return;
  try {
    const user = await api("/v1/users/" + encodeURIComponent(id));
    $("user-summary").textContent = "User " + user.user_id + ": " + user.n_interactions + " items; most recent:";
    for (const item of user.recent) list.append(el("li", item.title));
  } catch (err) {
    $("user-summary").textContent = err.message;
  }
}

function renderHistory() {
  const list = $("history-list");
  list.replaceChildren();
  picked.forEach((item, index) => {
    const li = el("li");
    li.append(el("span", item.title, "title"));
    const remove = el("button", "remove", "small");
    remove.type = "button";
    remove.addEventListener("click", () => { picked.splice(index, 1); renderHistory(); });
    li.append(remove);
    list.append(li);
  });
}

async function searchTitles() {
  const query = $("item-search").value.trim();
  const list = $("search-results");
  const mine = ++searchSeq;
  if (query.length < 2) { list.replaceChildren(); return; }
  try {
    const found = await api("/v1/items?limit=10&q=" + encodeURIComponent(query));
    if (mine !== searchSeq) return; // a newer search is under way
    list.replaceChildren();
    if (!found.items.length) list.append(el("li", "no title contains “" + query + "”", "hint"));
    for (const item of found.items) {
      const li = el("li");
      li.append(el("span", item.title, "title"));
      const add = el("button", "add", "small");
      add.type = "button";
      add.addEventListener("click", () => {
        if (!picked.some((h) => h.item_id === item.item_id)) picked.push(item);
        renderHistory();
      });
      li.append(add);
      list.append(li);
    }
  } catch (err) {
    list.replaceChildren(el("li", err.message, "hint"));
  }
}

function renderTurns() {
  const list = $("turns");
  list.replaceChildren();
  for (const turn of turns.slice(0, -1)) {
    const li = el("li");
    li.append(el("span", "You: “" + turn.request + "”", "turn-request"));
    li.append(el("span", " → " + (turn.titles.slice(0, 3).join(" · ") || "nothing matched"), "hint"));
    list.append(li);
  }
  list.hidden = turns.length < 2;
}

function renderAnswer(request, answer) {
  $("asked").textContent = request ? "You asked: “" + request + "”" : "No request text: ranked from who is asking.";
  $("meta").textContent = "aspects " + answer.aspects + " · template " + (answer.template_id || "none (first stage only)") +
    " · request read as " + answer.request_kind + " · " + answer.elapsed_ms.toFixed(0) + " ms";
  $("constraints").textContent = answer.constraints && answer.constraints.length
    ? "Kept: " + answer.constraints.join(" · ") : "";
  const body = document.querySelector("#results tbody");
  body.replaceChildren();
  if (answer.nothing_matches) {
    const row = el("tr");
    const cell = el("td", "Nothing in the catalogue matches this request.", "hint");
    cell.colSpan = 6;
    row.append(cell);
    body.append(row);
  }
  for (const item of answer.items) {
    const row = el("tr");
    row.append(el("td", item.rank, "num"), el("td", item.title, "title"), el("td", item.reason || "", "reason"),
      el("td", fmt(item.score), "num"), el("td", fmt(item.llm_score), "num"), el("td", fmt(item.retrieval_score), "num"));
    body.append(row);
  }
  const notes = $("notes");
  notes.replaceChildren(...answer.notes.map((n) => el("li", n)));
  $("instruction").textContent = answer.instruction || "(no LLM instruction was used)";
  $("answer").hidden = false;
}

async function submit(event) {
  event.preventDefault();
  turns = []; // a new request starts a new conversation
  await ask($("request").value.trim(), $("submit"));
}

async function refine(event) {
  event.preventDefault();
  const text = $("refine-text").value.trim();
  if (!text) { showError("Type how to refine the answer (e.g. something older)."); return; }
  if (await ask(text, $("refine-submit"))) $("refine-text").value = "";
}

function restart() {
  turns = [];
  $("answer").hidden = true;
  $("refine-text").value = "";
  $("request").focus();
}

// One call: the request plus the earlier turns (those with text, the most recent maxTurns).
async function ask(request, button) {
  showError("");
  const payload = { k: Number($("k").value) || 10 };
  const earlier = turns.filter((t) => t.request).slice(-maxTurns).map((t) => ({ request: t.request, items: t.items }));
  if (earlier.length) payload.conversation = earlier;
  if (request) payload.request = request;
  if (who() === "user") {
    const id = $("user-id").value.trim();
    if (!id) { showError("Type a user id, or choose another way of saying who is asking."); return false; }
    payload.user_id = id;
  } else if (who() === "history") {
    if (!picked.length) { showError("Add at least one title to the history (search above)."); return false; }
    payload.history = picked.map((h) => h.item_id);
  }
  button.disabled = true;
  $("status").textContent = "thinking…";
  try {
    const answer = await api("/v1/recommend", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
    });
    turns.push({ request: request, items: answer.items.map((i) => i.item_id), titles: answer.items.map((i) => i.title) });
    renderTurns();
    renderAnswer(request, answer);
    return true;
  } catch (err) {
    showError(err.message);
    return false;
  } finally {
    $("status").textContent = readyText;
    button.disabled = false;
  }
}

async function start() {
  document.querySelectorAll('input[name="who"]').forEach((r) => r.addEventListener("change", onWhoChange));
  $("user-check").addEventListener("click", lookUpUser);
  $("item-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(searchTitles, 250);
  });
  $("ask").addEventListener("submit", submit);
  $("refine").addEventListener("submit", refine);
  $("restart").addEventListener("click", restart);
  onWhoChange();
  try {
    const health = await api("/healthz");
    $("request").maxLength = health.limits.max_request_chars;
    $("k").max = health.limits.max_k;
    $("refine-text").maxLength = health.limits.max_request_chars;
    if (health.limits.max_turns) maxTurns = health.limits.max_turns;
    $("item-search").maxLength = health.limits.max_query_chars;
    readyText = "ready · " + health.users + " users · " + health.items + " items";
    $("status").textContent = readyText;
  } catch (err) {
    $("status").textContent = "server not ready: " + err.message;
  }
}

document.addEventListener("DOMContentLoaded", start);
