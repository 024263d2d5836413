"use strict";
// The page for this environment's packages. Every request carries the token the server put in
// the page; names and output are put in the page as text, never as HTML.
const token = (document.querySelector('meta[name="anymatix-token"]') || {}).content || "";
// Nothing secret stays in the address bar or the browser's history.
if (location.search) history.replaceState(null, "", location.pathname);
document.getElementById("address").textContent = location.href;
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

async function api(path, body) {
  const options = { headers: { "X-Token": token } };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = {};
  try { data = await response.json(); } catch (e) { /* no body */ }
  return { status: response.status, data };
}

// Splits what was typed into arguments as a shell would: spaces separate, quotes group.
function splitArgs(text) {
  const args = [];
  let current = "", quote = null, started = false;
  for (const ch of text) {
    if (quote) {
      if (ch === quote) quote = null; else current += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch; started = true;
    } else if (/\s/.test(ch)) {
      if (started) { args.push(current); current = ""; started = false; }
    } else {
      current += ch; started = true;
    }
  }
  if (started) args.push(current);
  return args;
}

function render(state) {
  $("where").textContent = "the Python packages of this portable ComfyUI environment (" + state.platform + ")";
  $("update-script").textContent = state.platform.startsWith("windows") ? "update.bat" : "update.sh";
  const protectedRows = $("protected").tBodies[0];
  protectedRows.replaceChildren(...state.packages.protected.map((p) => el("tr", {},
    el("td", {}, p.name),
    el("td", { class: "version" }, p.version || "not installed"),
    el("td", {}, !p.fix
      ? el("span", { class: "badge", title: p.why }, "protected")
      : el("span", { class: "badge bad", title: "to bring it back: " + p.fix },
        p.version !== p.zip_version ? "the zip has " + p.zip_version
          : p.differs.count + " files differ from the zip's: " + p.fix)))));
  const added = state.packages.added.concat(state.packages.changed.map((p) =>
    Object.assign({}, p, { when: "the zip had " + p.zip_version })));
  const addedRows = $("added").tBodies[0];
  addedRows.replaceChildren(...(added.length ? added.map((p) => el("tr", {},
    el("td", {}, p.name),
    el("td", { class: "version" }, p.version),
    el("td", {}, p.when || ""),
    el("td", {}, el("button", { class: "small", type: "button", onclick: () => change("/api/uninstall", { names: [p.name] }, "uninstall " + p.name) }, "Remove"))))
    : [el("tr", {}, el("td", { colspan: "4", class: "hint" }, "nothing yet"))]));
  const kept = state.states;
  $("states").textContent = kept.kept
    ? "Undo can go back through the last " + kept.keep + " changes; the states kept hold " + human(kept.held_bytes) + " of disk."
    : "Undo can go back through the last " + kept.keep + " changes (a state is kept at the first change).";
  let undoable = 0;
  $("history").replaceChildren(...(state.history.length ? state.history.map((entry) => {
    let button = null;
    if (entry.undoable) {
      undoable += 1;
      const steps = undoable;
      button = el("button", { class: "small", type: "button", onclick: () => change("/api/undo", { steps }, steps === 1 ? "undo" : "undo " + steps) },
        steps === 1 ? "Undo" : "Undo back to before this");
    }
    return el("li", {},
      el("span", { class: "id" }, "#" + entry.id),
      el("div", { class: "body" },
        el("div", {}, entry.what),
        el("div", { class: "when" }, entry.when),
        entry.notes.length ? el("div", { class: "notes" }, entry.notes.join(", ")) : null,
        entry.changes.length ? el("div", { class: "changes" }, entry.changes.join("; ")) : null),
      button);
  }) : [el("li", { class: "hint" }, "No changes yet.")]));
  if (state.last_check) showCheck(state.last_check);
  busy(state.job && state.job.running);
}

function human(bytes) {
  const units = ["bytes", "KB", "MB", "GB"];
  let i = 0;
  while (bytes >= 1000 && i < units.length - 1) { bytes /= 1000; i += 1; }
  return (i ? bytes.toFixed(1) : bytes) + " " + units[i];
}

function showCheck(check) {
  const lines = check.output.split("\n").filter((l) => /^(ok|FAILED)\s/.test(l));
  $("check-result").replaceChildren(
    el("div", { class: check.ok ? "ok" : "bad" }, check.ok ? "Healthy (" + check.when.replace("T", " ") + ")" : "Problems found (" + check.when.replace("T", " ") + ")"),
    ...lines.map((l) => el("div", { class: l.startsWith("ok") ? "ok" : "bad" }, l)));
}

function busy(running) {
  for (const button of document.querySelectorAll("button")) button.disabled = !!running;
}

function message(kind, text) {
  const box = $("message");
  box.className = "message " + kind;
  box.textContent = text;
  box.hidden = !text;
}

async function refresh() {
  const { status, data } = await api("/api/state");
  if (status === 200) render(data);
  else message("failed", data.error || "the server answered " + status);
}

async function change(path, body, what) {
  message("", "");
  const { status, data } = await api(path, body);
  if (status === 409) { message("refused", "Another change is running: wait for it to finish."); return; }
  if (status !== 202) { message("failed", data.error || "the server answered " + status); return; }
  busy(true);
  const output = $("output");
  output.hidden = false;
  output.textContent = "";
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 400));
    const job = (await api("/api/job")).data.job;
    if (!job || job.id !== data.job) continue;
    output.textContent = job.output;
    output.scrollTop = output.scrollHeight;
    if (job.running) continue;
    if (job.refused) message("refused", job.refused);
    else if (job.exit === 0) message("done", what + ": done.");
    else message("failed", what + " failed (exit status " + job.exit + "): see the output.");
    break;
  }
  await refresh();
}

$("install-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const args = splitArgs($("install-args").value);
  if (!args.length) { message("failed", "Type a package, or -r and a requirements file."); return; }
  change("/api/install", { args }, "install " + args.join(" "));
});
$("check-button").addEventListener("click", () => change("/api/check", {}, "check"));
function update(prepare) {
  const source = $("update-source").value.trim();
  if (!source) { message("failed", "Give the new release's zip: its address or a path."); return; }
  change("/api/update", { source, prepare }, (prepare ? "update --prepare " : "update --check ") + source);
}
$("update-form").addEventListener("submit", (event) => { event.preventDefault(); update(false); });
$("update-prepare").addEventListener("click", () => update(true));
refresh();
