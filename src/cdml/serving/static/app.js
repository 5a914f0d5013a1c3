// The page of `cdml serve`: upload or drop an image, show its nearest indexed items, click one
// to search from it. Everything comes from this service (no network beyond it).
"use strict";

const $ = (id) => document.getElementById(id);
let scoreName = "score";

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function ask(url, options = {}) {
  const response = await fetch(url, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function k() {
  return Math.max(1, parseInt($("k").value, 10) || 12);
}

function show(answer, what) {
  const list = $("results");
  list.replaceChildren();
  for (const item of answer.neighbours) {
    const entry = document.createElement("li");
    entry.className = "result";
    entry.dataset.id = item.id;
    entry.dataset.path = item.path;
    entry.title = "search from this item";
    const image = document.createElement("img");
    image.alt = item.path;
    image.loading = "lazy";
    image.src = `/items/${item.id}/thumbnail?size=128`;
    const rank = document.createElement("div");
    rank.className = "rank";
    rank.textContent = `#${item.rank}  ${scoreName} ${item.score.toFixed(4)}`;
    const label = document.createElement("div");
    label.className = "label";
    label.textContent = item.label >= 0 ? `label ${item.label}` : "no label";
    const path = document.createElement("div");
    path.className = "path";
    path.textContent = item.path.split("/").slice(-2).join("/");
    entry.append(image, rank, label, path);
    entry.addEventListener("click", () => searchItem(item.id, item.path));
    list.append(entry);
  }
  say(`${answer.neighbours.length} nearest items of ${what} (${answer.took_ms} ms)`);
}

async function searchFile(file) {
  if (!file) return;
  $("preview").src = URL.createObjectURL(file);
  say(`searching ${file.name}…`);
  const form = new FormData();
  form.append("file", file);
  try {
    show(await ask(`/search?k=${k()}`, { method: "POST", body: form }), file.name);
  } catch (error) {
    say(error.message, true);
  }
}

async function searchItem(id, path) {
  $("preview").src = `/items/${id}/thumbnail?size=128`;
  say(`searching from item ${id}…`);
  try {
    show(await ask(`/search/item/${id}?k=${k()}`), `item ${id} (${path})`);
  } catch (error) {
    say(error.message, true);
  }
}

$("file").addEventListener("change", (event) => searchFile(event.target.files[0]));
const drop = $("drop");
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
}
for (const name of ["dragleave", "drop"]) {
  drop.addEventListener(name, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  searchFile(event.dataTransfer.files[0]);
});

ask("/info")
  .then((info) => {
    scoreName = info.score;
    $("k").max = info.limits.max_k;
    $("facts").textContent =
      `${info.index_size.toLocaleString()} items, ${info.embedding_size}-d ${info.metric} ` +
      `(${info.index_kind} index), ${info.model}` + (info.rerank ? `, re-ranked by ${info.rerank}` : "");
  })
  .catch((error) => say(error.message, true));
