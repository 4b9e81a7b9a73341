// Model jobs: poll the JSON API every 2 s and update the rows in place (textContent only), start
// drafting or judging jobs and cancel them through the same API with the session cookie and CSRF
// header.
import { apiGet, apiPost, describeError } from "./common.js";

const app = document.getElementById("jobs-app");
if (app) init(app);

function init(app) {
  const api = app.dataset.apiBase;
  const canRun = Boolean(app.dataset.canRun);
  const body = document.getElementById("jobs-body");
  const note = document.getElementById("jobs-poll-note");
  const notice = document.getElementById("jobs-notice");
  const ACTIVE = new Set(["pending", "running"]);

  function showNotice(text, level = "error") {
    if (!notice) return;
    notice.textContent = text;
    notice.className = `notice ${level}`;
    notice.hidden = !text;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function newRow(job) {
    const tr = document.createElement("tr");
    tr.dataset.jobId = String(job.id);
    tr.append(cell(String(job.id)), cell("", ""), cell("", ""));
    tr.children[1].dataset.field = "kind";
    tr.children[2].dataset.field = "model";
    const statusTd = document.createElement("td");
    const badge = document.createElement("span");
    badge.dataset.field = "status";
    statusTd.append(badge);
    const progressTd = document.createElement("td");
    progressTd.className = "progress-col";
    const bar = document.createElement("progress");
    const counts = document.createElement("span");
    counts.className = "small muted";
    counts.dataset.field = "counts";
    progressTd.append(bar, " ", counts);
    const failed = cell("", "num");
    failed.dataset.field = "failed";
    const skipped = cell("", "num");
    skipped.dataset.field = "skipped";
    const created = cell("", "nowrap");
    created.dataset.field = "created";
    created.textContent = (job.created_at || "").slice(0, 16).replace("T", " ");
    tr.append(statusTd, progressTd, failed, skipped, created, cell("", "actions"));
    return tr;
  }

  function update(tr, job) {
    const handled = (job.done || 0) + (job.failed || 0) + (job.skipped || 0);
    tr.dataset.status = job.status;
    tr.querySelector("[data-field=kind]").textContent = job.kind;
    tr.querySelector("[data-field=model]").textContent = job.model;
    const badge = tr.querySelector("[data-field=status]");
    badge.textContent = job.status;
    badge.className = `status status-${job.status}`;
    const bar = tr.querySelector("progress");
    bar.max = Math.max(job.total || 0, handled, 1);
    bar.value = handled;
    tr.querySelector("[data-field=counts]").textContent = `${handled} / ${job.total}`;
    tr.querySelector("[data-field=failed]").textContent = String(job.failed);
    tr.querySelector("[data-field=skipped]").textContent = String(job.skipped);
    let error = tr.querySelector("[data-field=error]");
    if (job.error && !error) {
      error = document.createElement("div");
      error.className = "small err";
      error.dataset.field = "error";
      tr.querySelector(".progress-col").append(error);
    }
    if (error) error.textContent = (job.error || "").slice(0, 300);
    const actions = tr.querySelector(".actions");
    const button = actions.querySelector(".cancel-job");
    if (canRun && ACTIVE.has(job.status) && !button) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "btn danger small cancel-job";
      b.textContent = "Cancel";
      actions.append(b);
    } else if (button && !ACTIVE.has(job.status)) {
      button.remove();
    }
  }

  function render(jobs) {
    const rows = new Map(Array.from(body.querySelectorAll("tr[data-job-id]"), (tr) => [tr.dataset.jobId, tr]));
    if (jobs.length) body.querySelector(".no-jobs")?.remove();
    let previous = null;
    for (const job of jobs) {  // newest first, like the API
      let tr = rows.get(String(job.id));
      if (!tr) {
        tr = newRow(job);
        if (previous) previous.after(tr); else body.prepend(tr);
      }
      update(tr, job);
      previous = tr;
    }
  }

  let timer = null;
  async function poll() {
    clearTimeout(timer);
    const result = await apiGet(api);
    if (result.ok && Array.isArray(result.data)) {
      render(result.data);
      note.textContent = `Progress updates every 2 seconds · last update ${new Date().toLocaleTimeString()}`;
    } else {
      note.textContent = "Lost contact with the server; retrying…";
    }
    timer = setTimeout(poll, 2000);
  }

  async function start(payload, button) {
    button.disabled = true;
    showNotice("");
    const result = await apiPost(api, payload);
    button.disabled = false;
    if (result.ok) {
      showNotice(`Started ${payload.kind} job ${result.data.id}.`, "ok");
      poll();
    } else {
      showNotice(describeError(result, "No job was started."));
    }
  }

  if (canRun) {
    document.getElementById("drafting-form").addEventListener("submit", (e) => {
      e.preventDefault();
      start({ kind: "drafting", n: Number(document.getElementById("job-n").value),
        max_tokens: Number(document.getElementById("job-max-tokens").value) }, document.getElementById("start-drafting"));
    });
    document.getElementById("judging-form").addEventListener("submit", (e) => {
      e.preventDefault();
      start({ kind: "judging" }, document.getElementById("start-judging"));
    });
    body.addEventListener("click", async (e) => {
      const button = e.target.closest(".cancel-job");
      if (!button) return;
      const tr = button.closest("tr");
      button.disabled = true;
      const result = await apiPost(`${api}${tr.dataset.jobId}/cancel/`, {});
      if (result.ok) { update(tr, result.data); }
      else { button.disabled = false; showNotice(describeError(result, "The job was not changed.")); }
    });
  }

  poll();
  app.dataset.ready = "1";
}
