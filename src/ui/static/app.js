// The dashboard's one script (served from the binary at /ui/static/app.js): the policy
// upload sends the chosen file's bytes, and the campaigns page follows the live numbers.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const upload = document.getElementById("upload");
  if (upload) {
    upload.addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = document.getElementById("policy-name").value.trim();
      const file = document.getElementById("policy-file").files[0];
      const shown = document.getElementById("upload-error");
      shown.hidden = true;
      if (!name || !file) return;
      const response = await fetch("/ui/policies/" + encodeURIComponent(name) + "/upload", {
        method: "POST",
        headers: { "Content-Type": "application/wasm" },
        body: file,
      });
      if (response.ok) {
        // The server answered with a redirect to the list, which fetch followed.
        window.location.href = response.url;
        return;
      }
      // An error page: show its message.
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const message = page.querySelector(".error");
      shown.textContent = "Upload failed (" + response.status + "): " +
        (message ? message.textContent : response.statusText);
      shown.hidden = false;
    });
  }

  const live = document.getElementById("live");
  if (live && window.EventSource) {
    const source = new EventSource(live.dataset.events);
    source.addEventListener("progress", (event) => {
      for (const campaign of JSON.parse(event.data)) {
        for (const [key, value] of Object.entries(campaign)) {
          const cell = document.getElementById("c-" + campaign.id + "-" + key);
          if (cell) cell.textContent = String(value);
        }
      }
      live.dataset.updated = String(Date.now());
    });
  }
});
