// Datasets & finetunes: poll the page's status endpoint and update snapshot and finetune rows in
// place (textContent and createElement only). Every 2 s while something runs, every 15 s otherwise
// (a job started elsewhere still shows its progress). Rows that appeared since the page loaded come
// with the next reload; forms are plain posts, so typing is never interrupted.
import { apiGet } from "./common.js";

const app = document.getElementById("datasets-app");
if (app) init(app);

function init(app) {
  const url = app.dataset.statusUrl;
  const note = document.getElementById("datasets-poll-note");
  const ACTIVE = new Set(["pending", "running"]);

  function setStatus(tr, status) {
    tr.dataset.status = status;
    const badge = tr.querySelector("[data-field=status]");
    badge.textContent = status;
    badge.className = `status status-${status}`;
  }

  function setError(tr, text) {
    const error = tr.querySelector("[data-field=error]");
    error.textContent = text || "";
    error.hidden = !text;
  }

  function formatBytes(n) {
    if (n == null) return "";
    const units = ["bytes", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return i ? `${n.toFixed(1)} ${units[i]}` : `${n} ${units[i]}`;
  }

  function updateSnapshot(tr, s) {
    setStatus(tr, s.status);
    const cancel = tr.querySelector(".cancel-snapshot");
    if (cancel && !ACTIVE.has(s.status)) cancel.remove();  // finished: nothing left to cancel
    tr.querySelector("progress").value = s.status === "ready" ? 1 : s.progress;
    tr.querySelector("[data-field=records]").textContent = `${s.records_done} record${s.records_done === 1 ? "" : "s"}`;
    setError(tr, s.error);
    const rows = tr.querySelector("[data-field=rows]");
    const names = Object.keys(s.rows || {});
    if (names.length && rows.dataset.filled !== "1") {
      rows.replaceChildren(...names.map((name) => {
        const div = document.createElement("div");
        const strong = document.createElement("strong");
        strong.textContent = String(s.rows[name]);
        div.append(`${name} `, strong);
        return div;
      }));
      rows.dataset.filled = "1";
    }
    const hash = tr.querySelector("[data-field=hash]");
    if (s.content_sha256) {
      hash.textContent = s.content_sha256.slice(0, 12);
      hash.title = `sha256 ${s.content_sha256}`;
    }
    const files = tr.querySelector("[data-field=files]");
    if (s.files.length && !files.querySelector("a")) {
      const link = (f) => {
        const a = document.createElement("a");
        a.href = f.url;  // our own download endpoint, built by the server
        a.setAttribute("download", "");
        a.textContent = f.name;
        a.title = formatBytes(f.bytes);
        return a;
      };
      const parts = [];
      for (const f of s.files.filter((x) => x.main)) parts.push(link(f), document.createElement("br"));
      const all = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = `all ${s.files.length} files`;
      all.append(summary);
      for (const f of s.files) {
        const size = document.createElement("span");
        size.className = "muted";
        size.textContent = ` ${formatBytes(f.bytes)}`;
        all.append(link(f), size, document.createElement("br"));
      }
      files.replaceChildren(...parts, all);
    }
  }

  function updateFinetune(tr, j) {
    setStatus(tr, j.status);
    tr.querySelector("progress").value = j.status === "done" ? 1 : j.progress;
    tr.querySelector("[data-field=steps]").textContent = `step ${j.step} / ${j.total_steps || "?"}`;
    tr.querySelector("[data-field=loss]").textContent = j.loss == null ? "–" : String(j.loss);
    tr.querySelector("[data-field=result]").textContent = j.result_model || "–";
    setError(tr, j.error);
  }

  let timer = null;
  async function poll() {
    clearTimeout(timer);
    const result = await apiGet(url);
    let busy = false;
    if (result.ok && result.data && Array.isArray(result.data.snapshots)) {
      for (const s of result.data.snapshots) {
        const tr = app.querySelector(`tr[data-snapshot-id="${s.id}"]`);
        if (tr) updateSnapshot(tr, s);
        busy ||= ACTIVE.has(s.status);
      }
      for (const j of result.data.finetunes) {
        const tr = app.querySelector(`tr[data-finetune-id="${j.id}"]`);
        if (tr) updateFinetune(tr, j);
        busy ||= ACTIVE.has(j.status);
      }
      note.textContent = `${busy ? "Jobs running: updates every 2 seconds" : "Nothing running"} · last update ${new Date().toLocaleTimeString()}`;
    } else {
      busy = true;
      note.textContent = "Lost contact with the server; retrying…";
    }
    timer = setTimeout(poll, busy ? 2000 : 15000);
  }

  poll();
  app.dataset.ready = "1";
}
