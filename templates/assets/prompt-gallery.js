/* Prompt gallery: the dropdowns pick a cell of the matrix and the grid shows its images.
   Everything comes from the manifest (one source of truth); prompt text reaches the page only
   through textContent and attributes. URLs are resolved against the page's own base, so the
   gallery works under any baseurl. */
(function () {
  "use strict";

  function init(root) {
    const manifestUrl = new URL(root.getAttribute("data-manifest"), document.baseURI);
    const siteRoot = new URL(root.getAttribute("data-root"), document.baseURI);
    fetch(manifestUrl)
      .then(function (response) {
        if (!response.ok) throw new Error(response.status + " " + manifestUrl);
        return response.json();
      })
      .then(function (manifest) { start(root, manifest, siteRoot); })
      .catch(function (err) { console.warn("prompt gallery: manifest not loaded:", err.message); });
  }

  function start(root, manifest, siteRoot) {
    const grid = root.querySelector(".pg-grid");
    const promptText = root.querySelector(".pg-prompt-text");
    const negative = root.querySelector(".pg-negative");
    const negativeText = root.querySelector(".pg-negative-text");
    const status = root.querySelector(".pg-status");
    const selects = manifest.axes.map(function (axis) {
      return root.querySelector('select[data-axis="' + axis.name + '"]');
    });
    let shown = manifest.default.join("/");

    function cellFromUrl() {
      const params = new URLSearchParams(window.location.search);
      return manifest.axes.map(function (axis, i) {
        const wanted = params.get(axis.name);
        const known = axis.options.some(function (o) { return o.key === wanted; });
        return known ? wanted : manifest.default[i];
      });
    }

    function urlFor(cell) {
      const url = new URL(window.location.href);
      manifest.axes.forEach(function (axis, i) { url.searchParams.set(axis.name, cell[i]); });
      return url.toString();
    }

    function show(cell) {
      selects.forEach(function (select, i) { select.value = cell[i]; });
      const path = cell.join("/");
      if (path === shown) return;
      shown = path;
      const data = manifest.cells[path];
      promptText.textContent = data.prompt;
      negativeText.textContent = data.negative_prompt;
      negative.hidden = !data.negative_prompt;
      const missing = manifest.samples - data.images.length;
      status.textContent = missing > 0
        ? missing + " of " + manifest.samples + " images in this cell are not rendered yet."
        : "";
      const items = data.images.map(function (image, i) {
        const figure = document.createElement("figure");
        figure.className = "pg-item col";
        const link = document.createElement("a");
        link.className = "pg-link";
        link.href = new URL(image.full, siteRoot).toString();
        const img = document.createElement("img");
        img.className = "pg-img";
        img.src = new URL(image.thumb, siteRoot).toString();
        img.width = image.width;
        img.height = image.height;
        img.alt = data.prompt + " (sample " + (image.sample + 1) + " of " + manifest.samples +
          ", seed " + image.seed + ")";
        img.loading = i < 4 ? "eager" : "lazy";
        img.decoding = "async";
        link.appendChild(img);
        figure.appendChild(link);
        return figure;
      });
      grid.replaceChildren.apply(grid, items);
    }

    selects.forEach(function (select) {
      select.disabled = false;
      select.addEventListener("change", function () {
        const cell = selects.map(function (s) { return s.value; });
        show(cell);
        window.history.pushState(null, "", urlFor(cell));
      });
    });
    window.addEventListener("popstate", function () { show(cellFromUrl()); });
    show(cellFromUrl());
  }

  function boot() {
    document.querySelectorAll(".prompt-gallery[data-manifest]").forEach(init);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
