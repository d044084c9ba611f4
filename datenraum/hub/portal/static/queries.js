// The saved-queries page: duplicate, delete and import without leaving the page's list behind.
"use strict";

(function () {
  const T = JSON.parse(document.getElementById("texts").textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  async function api(method, path, body) {
    const response = await fetch(path, {
      method,
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new Error((data && data.error) || `HTTP ${response.status}`);
    return data;
  }

  const result = document.getElementById("import-result");

  document.getElementById("saved-queries").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    try {
      if (button.dataset.action === "duplicate") {
        await api("POST", `/api/v1/saved-queries/${button.dataset.id}/duplicate`);
      } else if (button.dataset.action === "delete") {
        if (!window.confirm(button.dataset.confirm)) return;
        await api("DELETE", `/api/v1/saved-queries/${button.dataset.id}`);
      }
      window.location.reload();
    } catch (error) {
      result.textContent = `${T.error}: ${error.message}`;
    }
  });

  document.getElementById("import-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    try {
      const query = JSON.parse(await file.text());
      const name = (query && query.display) || file.name.replace(/\.json$/i, "");
      await api("POST", "/api/v1/saved-queries", { name, query });
      result.textContent = T.imported.replace("{name}", file.name);
      window.location.reload();
    } catch (error) {
      result.textContent = `${file.name}: ${error.message}`;
    }
  });
})();
