// Gallery widget (st.components.v2, no build step, no CDN): thumbnails with their map drawn over them.
//
// data = {items: [{id, base, heat, title, lines: [..], badge: "right"|"wrong"|"", blank, problem,
//                   boxes: {w, h, rects: [[x0, y0, x1, y1, own], ..]} (optional, in the input's pixels)}],
//         opacity: 0..1, columns: n}
// Each thumbnail is the image as the model saw it with the map's colour layer on top; the layer's alpha is
// the evidence, so the CSS opacity of the layers blends them as cam_core.render.overlay does: the opacity
// slider restyles in the browser (no rerun) and reports where it was left (state "opacity").
// A click on a thumbnail emits the trigger "open" with the row id.

// Ground-truth boxes over the thumbnail: an SVG in the input's pixels (viewBox), fitted like the images
// (object-fit: contain = preserveAspectRatio meet). "own" boxes are the shown class's object.
function boxLayer(boxes) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "gl-boxes");
  svg.setAttribute("viewBox", `0 0 ${boxes.w} ${boxes.h}`);
  svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
  svg.setAttribute("data-testid", "gallery-boxes");
  for (const [x0, y0, x1, y1, own] of boxes.rects) {
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", x0);
    r.setAttribute("y", y0);
    r.setAttribute("width", x1 - x0);
    r.setAttribute("height", y1 - y0);
    r.setAttribute("class", own ? "gl-box gl-box-own" : "gl-box");
    svg.appendChild(r);
  }
  return svg;
}

function card(item, emit) {
  const el = document.createElement("div");
  el.className = `gl-card ${item.badge ? "gl-" + item.badge : ""}`;
  el.setAttribute("data-row", String(item.id));
  el.setAttribute("data-testid", "gallery-card");
  el.tabIndex = 0;
  el.title = "Open on the image page";
  const frame = document.createElement("div");
  frame.className = "gl-frame";
  if (item.base) {
    const base = document.createElement("img");
    base.className = "gl-base";
    base.src = item.base;
    base.alt = item.title;
    frame.appendChild(base);
  }
  if (item.heat) {
    const heat = document.createElement("img");
    heat.className = "gl-heat";
    heat.src = item.heat;
    heat.alt = "";
    frame.appendChild(heat);
  }
  if (item.boxes && item.boxes.rects && item.boxes.rects.length) frame.appendChild(boxLayer(item.boxes));
  if (item.problem) {
    const p = document.createElement("div");
    p.className = "gl-problem";
    p.textContent = item.problem;
    frame.appendChild(p);
  }
  if (item.blank) {
    const b = document.createElement("span");
    b.className = "gl-chip gl-chip-blank";
    b.textContent = "blank after ReLU";
    frame.appendChild(b);
  }
  el.appendChild(frame);
  const title = document.createElement("div");
  title.className = "gl-title";
  title.textContent = item.title;
  el.appendChild(title);
  for (const line of item.lines || []) {
    const l = document.createElement("div");
    l.className = "gl-line";
    l.textContent = line;
    el.appendChild(l);
  }
  const open = () => emit("open", item.id);
  el.addEventListener("click", open);
  el.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      open();
    }
  });
  return el;
}

function setOpacity(root, value) {
  root.style.setProperty("--gl-opacity", String(value));
  const label = root.querySelector(".gl-opacity-value");
  if (label) label.textContent = Number(value).toFixed(2);
}

export default function (component) {
  const { data, parentElement, setTriggerValue, setStateValue } = component;
  let root = parentElement.querySelector(".gl-root");
  if (!root) {
    root = document.createElement("div");
    root.className = "gl-root";
    root.innerHTML = `
      <div class="gl-toolbar">
        <label class="gl-opacity">Map opacity
          <input type="range" min="0" max="1" step="0.05" data-testid="gallery-opacity" />
          <span class="gl-opacity-value"></span>
        </label>
      </div>
      <div class="gl-grid" data-testid="gallery-grid"></div>`;
    parentElement.appendChild(root);
    const slider = root.querySelector("input");
    slider.addEventListener("input", () => setOpacity(root, slider.value));
    // "change" fires on release: the page learns the value once, without a rerun per step.
    slider.addEventListener("change", () => root._gl.report(parseFloat(slider.value)));
    root._gl = {};
  }
  root._gl.report = (v) => setStateValue("opacity", v);
  const slider = root.querySelector("input");
  if (document.activeElement !== slider) {
    slider.value = String(data.opacity);
    setOpacity(root, data.opacity);
  }
  const grid = root.querySelector(".gl-grid");
  grid.style.setProperty("--gl-columns", String(data.columns || 6));
  grid.replaceChildren(...data.items.map((item) => card(item, setTriggerValue)));
}
