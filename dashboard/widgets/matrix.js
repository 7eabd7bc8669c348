// Confusion-matrix widget (st.components.v2, no build step, no CDN): one HTML cell per (true, predicted) pair.
//
// data = {rows: [true class], cols: [predicted class; the last may be "N other classes"], row_labels, col_labels:
//         the names cut to fit, counts: [[n]], text: [["5.6k" | ""]], share: [[count / row total]],
//         selected: [row, col] | null, cell: px, other: bool (the last column gathers the other classes)}
// Rows are the true classes, columns the predicted ones in the same order first: the diagonal is the correct answers.
// A cell's colour is its row share on Plotly's "Blues" (0 → 1). A click (or Enter on a focused cell; arrow keys move)
// emits the trigger "cell" with [row, col]. Names come from results files: they are only ever set as text.

const BLUES = [
  [0, [247, 251, 255]], [0.125, [222, 235, 247]], [0.25, [198, 219, 239]], [0.375, [158, 202, 225]],
  [0.5, [107, 174, 214]], [0.625, [66, 146, 198]], [0.75, [33, 113, 181]], [0.875, [8, 81, 156]], [1, [8, 48, 107]],
];

function blues(v) {
  const x = Math.min(1, Math.max(0, v));
  let k = 1;
  while (k < BLUES.length - 1 && BLUES[k][0] < x) k++;
  const [x0, c0] = BLUES[k - 1];
  const [x1, c1] = BLUES[k];
  const t = (x - x0) / (x1 - x0);
  return c0.map((c, i) => Math.round(c + (c1[i] - c) * t));
}

// Dark text on light cells, white on dark ones (relative luminance, as WCAG weighs the channels).
function ink(rgb) {
  const lum = rgb.map((c) => {
    const s = c / 255;
    return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * lum[0] + 0.7152 * lum[1] + 0.0722 * lum[2] > 0.36 ? "#0b2545" : "#ffffff";
}

function div(className, text) {
  const el = document.createElement("div");
  el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function place(el, row, col) {
  el.style.gridRow = String(row);
  el.style.gridColumn = String(col);
  return el;
}

function tooltip(data, i, j) {
  const n = data.counts[i][j];
  const share = Math.round(data.share[i][j] * 100);
  return `true ${data.rows[i]}\npredicted ${data.cols[j]}\n${n.toLocaleString("en-US")} image${n === 1 ? "" : "s"} ` +
    `(${share}% of the class)\nclick to show them`;
}

function build(data, emit) {
  const nr = data.rows.length;
  const nc = data.cols.length;
  const grid = div("mx-grid");
  grid.style.setProperty("--mx-cell", `${data.cell}px`);
  grid.style.gridTemplateColumns = `auto auto repeat(${nc}, var(--mx-col-w, var(--mx-cell)))`;
  grid.style.gridTemplateRows = `repeat(${nr}, var(--mx-cell)) auto auto`;
  grid.classList.toggle("mx-small", data.cell < 30);
  grid.appendChild(place(div("mx-title mx-ytitle", "true class"), `1 / span ${nr}`, 1));
  const rowLabels = data.row_labels.map((label, i) => {
    const el = place(div("mx-row", label), i + 1, 2);
    el.title = data.rows[i];
    grid.appendChild(el);
    return el;
  });
  const colLabels = data.col_labels.map((label, j) => {
    const el = place(div("mx-col"), nr + 1, j + 3);
    const text = div("mx-col-text", label);
    el.title = data.cols[j];
    if (data.other && j === nc - 1) el.classList.add("mx-other");
    el.appendChild(text);
    grid.appendChild(el);
    return el;
  });
  grid.appendChild(place(div("mx-title mx-xtitle", "predicted"), nr + 2, `3 / span ${nc}`));
  const [si, sj] = data.selected || [-1, -1];
  const focusAt = si >= 0 ? [si, sj] : [0, 0];
  const cells = [];
  for (let i = 0; i < nr; i++) {
    const row = [];
    for (let j = 0; j < nc; j++) {
      const el = place(div("mx-cell", data.text[i][j]), i + 1, j + 3);
      const rgb = blues(data.share[i][j]);
      el.style.background = `rgb(${rgb.join(",")})`;
      el.style.color = ink(rgb);
      if (i === j) el.classList.add("mx-diag");
      if (i === si && j === sj) el.classList.add("mx-selected");
      el.title = tooltip(data, i, j);
      el.tabIndex = i === focusAt[0] && j === focusAt[1] ? 0 : -1;
      el.setAttribute("role", "button");
      el.setAttribute("data-testid", "matrix-cell");
      el.setAttribute("data-row", String(i));
      el.setAttribute("data-col", String(j));
      el.setAttribute("data-true", data.rows[i]);
      el.setAttribute("data-pred", data.cols[j]);
      el._mx = [i, j];
      row.push(el);
      grid.appendChild(el);
    }
    cells.push(row);
  }
  if (si >= 0) {
    rowLabels[si]?.classList.add("mx-picked");
    colLabels[sj]?.classList.add("mx-picked");
  }
  // One listener each for the whole grid: hovering lights the cell's row and column names.
  let hot = null;
  const light = (on) => {
    if (!hot) return;
    rowLabels[hot[0]].classList.toggle("mx-hot", on);
    colLabels[hot[1]].classList.toggle("mx-hot", on);
  };
  grid.addEventListener("pointerover", (ev) => {
    const at = ev.target._mx;
    if (!at) return;
    light(false);
    hot = at;
    light(true);
  });
  grid.addEventListener("pointerleave", () => {
    light(false);
    hot = null;
  });
  grid.addEventListener("click", (ev) => {
    if (ev.target._mx) emit("cell", ev.target._mx);
  });
  grid.addEventListener("keydown", (ev) => {
    const at = ev.target._mx;
    if (!at) return;
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      emit("cell", at);
      return;
    }
    const step = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[ev.key];
    if (!step) return;
    ev.preventDefault();
    const next = cells[Math.min(nr - 1, Math.max(0, at[0] + step[0]))][Math.min(nc - 1, Math.max(0, at[1] + step[1]))];
    ev.target.tabIndex = -1;
    next.tabIndex = 0;
    next.focus();
  });
  return grid;
}

// Narrowest column a count stays readable in ("5.6k" in a smaller font); narrower, the widget scrolls sideways.
const MIN_COLUMN = 16;

// Fit the grid to the width it has: the column names are turned 45°, so the band under the cells is as tall as the
// longest, the grid moves right when the first ones would reach past its left edge, and the columns narrow (down
// to MIN_COLUMN) when the whole would be wider than the widget. Rows keep their height.
function fit(grid, width) {
  const texts = [...grid.querySelectorAll(".mx-col-text")];
  const first = grid.querySelector(".mx-cell");
  if (!texts.length || !first) return;
  const slant = Math.SQRT1_2;
  const long = texts.map((t) => t.offsetWidth * slant);
  grid.style.setProperty("--mx-label-h", `${Math.ceil(Math.max(...long) + texts[0].offsetHeight * slant) + 4}px`);
  const base = Number.parseFloat(grid.style.getPropertyValue("--mx-cell"));
  const labels = first.offsetLeft - Number.parseFloat(grid.style.paddingLeft || "0");  // the titles and row names
  const pad = (w) => Math.max(0, Math.ceil(Math.max(...long.map((l, j) => l - j * (w + 1) - w / 2)) - labels + 4));
  let w = base;
  while (w > MIN_COLUMN && pad(w) + labels + texts.length * (w + 1) > width) w--;
  grid.style.setProperty("--mx-col-w", `${w}px`);
  grid.classList.toggle("mx-tight", w < 21);
  grid.style.paddingLeft = `${pad(w)}px`;
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let root = parentElement.querySelector(".mx-root");
  if (!root) {
    root = div("mx-root");
    root.setAttribute("data-testid", "matrix");
    parentElement.appendChild(root);
    let seen = 0;
    new ResizeObserver(() => {
      const grid = root.querySelector(".mx-grid");
      if (grid && root.clientWidth !== seen) fit(grid, (seen = root.clientWidth));
    }).observe(root);
  }
  const focused = parentElement.getRootNode().activeElement?._mx;  // a redraw keeps the keyboard on the matrix
  const grid = build(data, setTriggerValue);
  root.replaceChildren(grid);
  fit(grid, root.clientWidth);
  if (focused) grid.querySelector(".mx-cell[tabindex='0']")?.focus();
}
