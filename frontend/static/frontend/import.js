// Import report: poll the API while the batch runs, then reload once to show the final report.
import { apiGet } from "./common.js";

const report = document.getElementById("import-report");
if (report && !report.dataset.finished) poll();

async function poll() {
  const result = await apiGet(report.dataset.pollUrl);
  if (result.ok) {
    const b = result.data;
    const rows = b.progress_rows ?? b.rows_done;
    document.getElementById("imp-status").textContent = b.status;
    document.getElementById("imp-status").className = `status status-${b.status}`;
    document.getElementById("imp-rows").textContent = `${rows} rows read`;
    const bar = document.getElementById("imp-progress");
    bar.max = Math.max(b.rows_total || 0, rows || 0, 1);
    bar.value = rows || 0;
    for (const [id, key] of [["imp-total", "rows_total"], ["imp-created", "tasks_created"],
      ["imp-dups", "duplicates"], ["imp-errors", "error_count"]]) {
      document.getElementById(id).textContent = String(b[key]);
    }
    if (b.status === "done" || b.status === "failed") { window.location.reload(); return; }
  } else {
    document.getElementById("imp-poll-note").textContent = "Lost contact with the server; retrying…";
  }
  setTimeout(poll, 1000);
}

// The data checks run after the import commits: poll until the scan has finished, then reload.
const screening = document.getElementById("import-screening");
if (screening && report && report.dataset.finished && screening.dataset.scanPending) pollScan();

async function pollScan() {
  const result = await apiGet(screening.dataset.scanUrl);
  const scan = result.ok ? result.data[0] : null;
  if (scan && (scan.status === "done" || scan.status === "failed")) { window.location.reload(); return; }
  setTimeout(pollScan, 2000);
}
