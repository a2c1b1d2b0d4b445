// "Export everything": follows an export while it is built, then reloads the Privacy page so
// the download link shows. Without script the page still says where the export is.
(function () {
  "use strict";
  const box = document.getElementById("export-progress");
  if (!box) return;
  const bar = document.getElementById("export-bar");
  const text = document.getElementById("export-text");
  let tries = 0;
  const poll = async () => {
    tries += 1;
    try {
      const response = await fetch(box.dataset.statusUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const status = await response.json();
        if (status.entries_total > 0) {
          bar.max = status.entries_total;
          bar.value = status.entries_done;
        }
        text.textContent = status.text;
        if (status.status !== "queued" && status.status !== "running") {
          window.location.reload();
          return;
        }
      } else if (response.status === 404) {
        return;
      }
    } catch (_) {
      // Offline for a moment: the next try may work.
    }
    setTimeout(poll, tries < 30 ? 1000 : 5000);
  };
  setTimeout(poll, 1000);
})();
