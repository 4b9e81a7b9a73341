// One finetune job: while it is pending or running, poll the finetune API every 2 s, update the
// figures and the log (textContent only) and reload the loss curve (a server-drawn SVG image) when
// a new step arrived. When the job ends, reload once so the page shows its final state and actions.
import { apiGet } from "./common.js";

const app = document.getElementById("finetune-app");
if (app) init(app);

function init(app) {
  const ACTIVE = new Set(["pending", "running"]);
  const note = document.getElementById("finetune-poll-note");
  const plot = document.getElementById("loss-plot");
  const log = document.getElementById("finetune-log");
  let step = Number(app.dataset.step || 0);

  function lastLoss(metrics) {
    for (let i = (metrics || []).length - 1; i >= 0; i -= 1) {
      if (metrics[i].loss != null) return Math.round(metrics[i].loss * 10000) / 10000;
    }
    return null;
  }

  function update(job) {
    const badge = app.querySelector("[data-field=status]");
    badge.textContent = job.status;
    badge.className = `status status-${job.status}`;
    app.querySelector("progress").value = job.status === "done" ? 1 : job.progress;
    app.querySelector("[data-field=steps]").textContent = `step ${job.step} / ${job.total_steps || "?"}`;
    const loss = lastLoss(job.metrics);
    app.querySelector("[data-field=loss]").textContent = loss == null ? "–" : String(loss);
    const error = app.querySelector("[data-field=error]");
    error.textContent = job.error || "";
    error.hidden = !job.error;
    if (job.log) log.textContent = job.log;
    if (job.step !== step) {
      step = job.step;
      plot.src = `${app.dataset.lossUrl}?step=${step}`;
    }
  }

  let timer = null;
  async function poll() {
    clearTimeout(timer);
    const result = await apiGet(app.dataset.apiUrl);
    if (result.ok && result.data && result.data.status) {
      update(result.data);
      if (!ACTIVE.has(result.data.status)) {
        window.location.reload();
        return;
      }
      note.textContent = `Updates every 2 seconds · last update ${new Date().toLocaleTimeString()}`;
    } else {
      note.textContent = "Lost contact with the server; retrying…";
    }
    timer = setTimeout(poll, 2000);
  }

  if (ACTIVE.has(app.dataset.status)) poll();
  app.dataset.ready = "1";
}
