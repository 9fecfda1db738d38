/* The live preview (only `gallery serve --watch` puts this script on the page: a published page
   never has it). The preview server tells the open page of each new state of the site by
   Server-Sent Events; on a new site each gallery on the page is asked to fetch its manifest again
   (the "pg-refresh" event, see prompt-gallery.js), which fills in the images that landed where
   the reader is looking, without a reload. A mistake (in prompts.yaml, a template, the render)
   shows as a banner while the last good page stays. When what the page's HTML is made of changes
   (the axes, the page's settings, a template: `shape`), the page reloads; its URL keeps the view.
   The page tells the preview which view it shows (its URL, on each change), and the cells in it
   render first. */

const shape = new URL(import.meta.url).searchParams.get("shape");

const banner = document.createElement("div");
banner.className = "pg-live-banner";
banner.setAttribute("role", "alert");
Object.assign(banner.style, {
  position: "sticky", top: "0", zIndex: "1000", margin: "0 0 1rem", padding: "0.75rem 1rem",
  whiteSpace: "pre-wrap", overflowWrap: "anywhere", font: "0.875rem/1.4 monospace",
  background: "#fff3cd", color: "#3d2c00", borderBottom: "2px solid #b45309",
});
banner.hidden = true;
const progress = document.createElement("p");
progress.className = "pg-live-status";
Object.assign(progress.style, {
  position: "fixed", right: "0.5rem", bottom: "0.5rem", zIndex: "1000", margin: "0", padding: "0.25rem 0.5rem",
  font: "0.75rem/1.4 sans-serif", background: "#1f1f1f", color: "#fff", borderRadius: "4px",
});
progress.hidden = true;
document.body.prepend(banner);
document.body.append(progress);

let site = null;
const events = new EventSource("/__gallery/events");
events.addEventListener("message", (event) => {
  const state = JSON.parse(event.data);
  if (shape !== null && state.shape !== shape) {
    events.close();
    window.location.reload();
    return;
  }
  banner.textContent = state.error ? `The preview shows the last good page.\n${state.error}` : "";
  banner.hidden = !state.error;
  progress.textContent = state.status;
  progress.hidden = !state.status;
  if (state.site !== site) {
    site = state.site;
    document.querySelectorAll(".prompt-gallery[data-manifest]").forEach(refresh);
  }
});

// A new site: the dropdowns get the options the manifest lists now (an option added to an axis),
// then the gallery's own script shows the reader's view anew ("pg-refresh", prompt-gallery.js).
const refresh = async (root) => {
  try {
    const response = await fetch(new URL(root.dataset.manifest, document.baseURI), { cache: "no-cache" });
    const manifest = await response.json();
    root.querySelectorAll("select[data-axis]").forEach((select) => {
      const i = manifest.axes.findIndex((axis) => axis.name === select.dataset.axis);
      const options = manifest.axes[i]?.options ?? [];
      const now = options.map((o) => `${o.key}\n${o.label}`).join("\n");
      if (!options.length || [...select.options].map((o) => `${o.value}\n${o.textContent}`).join("\n") === now) return;
      const value = select.value;
      select.replaceChildren(...options.map((o) => new Option(o.label, o.key)));
      select.value = options.some((o) => o.key === value) ? value : manifest.default[i];
    });
  } catch {
    // the gallery's script says it when it cannot load the manifest either
  }
  root.dispatchEvent(new CustomEvent("pg-refresh"));
};

// The view the reader has (the page keeps it in its URL): the preview renders its cells first.
const tell = () => fetch("/__gallery/view", { method: "POST", body: window.location.search }).catch(() => {});
const pushState = window.history.pushState.bind(window.history);
window.history.pushState = (...args) => {
  pushState(...args);
  tell();
};
window.addEventListener("popstate", tell);
tell();
