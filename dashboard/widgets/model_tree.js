// Model-tree widget (st.components.v2, no build step, no CDN).
//
// data = {nodes: [{name, label, type, shape, camable, reason, recommended, why, hints: [{short, word, text}], parent}],
//         selected: "dotted.name" | null, height: px}
// Emits one trigger, "select", with the clicked layer's dotted name; Python owns the selection
// and sends it back in `data.selected`, so the tree only mirrors it.
//
// The function runs again on every rerun; with the same data it returns at once (nothing is rebuilt),
// and with new data expansion and the filter text are kept on the root element, so a rerun does not
// collapse what the user opened.

const CARET_OPEN = "\u25BE";
const CARET_CLOSED = "\u25B8";

function buildIndex(nodes) {
  const byName = new Map();
  const children = new Map();
  for (const node of nodes) {
    byName.set(node.name, node);
    const parent = node.parent || "";
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(node.name);
  }
  return { byName, children };
}

function ancestors(name, byName) {
  const out = [];
  let node = byName.get(name);
  while (node && node.parent) {
    out.push(node.parent);
    node = byName.get(node.parent);
  }
  return out;
}

function skeleton(parentElement) {
  const root = document.createElement("div");
  root.className = "mt-root";
  root.innerHTML = `
    <div class="mt-toolbar">
      <input class="mt-filter" type="search" placeholder="Filter layers by name or type"
             aria-label="Filter layers" data-testid="model-tree-filter" />
      <button class="mt-btn" data-action="expand" title="Expand all">+</button>
      <button class="mt-btn" data-action="collapse" title="Collapse all">&minus;</button>
    </div>
    <div class="mt-legend"></div>
    <div class="mt-list" role="tree" aria-label="Model layers" data-testid="model-tree"></div>
    <div class="mt-status" aria-live="polite"></div>`;
  parentElement.appendChild(root);
  root._mt = { expanded: null, filter: "", lastSelected: undefined, data: null, emit: null };
  return root;
}

function chip(cls, text, title) {
  const el = document.createElement("span");
  el.className = `mt-badge ${cls}`;
  el.textContent = text;
  if (title) el.title = title;
  return el;
}

function legendItem(badge, word) {
  const item = document.createElement("span");
  item.append(badge, ` ${word}`);
  return item;
}

function renderLegend(root, nodes) {
  const seen = new Map();
  for (const node of nodes) for (const h of node.hints || []) if (!seen.has(h.short)) seen.set(h.short, h);
  const items = [legendItem(chip("mt-rec", "\u2605", "recommended layer"), "recommended")];
  for (const h of seen.values()) items.push(legendItem(chip("mt-hint", h.short, h.text), h.word));
  const grey = document.createElement("span");
  grey.className = "mt-dim";
  grey.textContent = "grey: no CAM here";
  items.push(grey);
  root.querySelector(".mt-legend").replaceChildren(...items);
}

function matches(node, needle) {
  if (!needle) return true;
  return node.name.toLowerCase().includes(needle) || node.type.toLowerCase().includes(needle);
}

function render(root) {
  const st = root._mt;
  const { nodes, selected } = st.data;
  const { byName, children } = st.index;
  const needle = st.filter.trim().toLowerCase();
  const list = root.querySelector(".mt-list");

  // While filtering: show matches and their ancestors, all expanded.
  let visibleByFilter = null;
  if (needle) {
    visibleByFilter = new Set();
    for (const node of nodes) {
      if (matches(node, needle)) {
        visibleByFilter.add(node.name);
        for (const a of ancestors(node.name, byName)) visibleByFilter.add(a);
      }
    }
  }

  const frag = document.createDocumentFragment();
  let shown = 0;
  const walk = (parent, depth) => {
    for (const name of children.get(parent) || []) {
      if (visibleByFilter && !visibleByFilter.has(name)) continue;
      const node = byName.get(name);
      const kids = children.get(name) || [];
      const open = visibleByFilter ? true : st.expanded.has(name);
      frag.appendChild(row(node, depth, kids.length > 0, open, name === selected, needle));
      shown += 1;
      if (kids.length && open) walk(name, depth + 1);
    }
  };
  walk("", 0);
  list.replaceChildren(frag);
  const status = root.querySelector(".mt-status");
  status.textContent = needle
    ? `${[...visibleByFilter].filter((n) => matches(byName.get(n), needle)).length} matching layers`
    : `${nodes.length} layers, ${nodes.filter((n) => n.camable).length} CAM-able`;
  return shown;
}

function row(node, depth, hasKids, open, isSelected, needle) {
  const el = document.createElement("div");
  el.className = "mt-row" + (node.camable ? "" : " mt-disabled") + (isSelected ? " mt-selected" : "");
  el.setAttribute("role", "treeitem");
  el.setAttribute("data-layer", node.name);
  el.setAttribute("aria-selected", isSelected ? "true" : "false");
  if (hasKids) el.setAttribute("aria-expanded", open ? "true" : "false");
  el.tabIndex = node.camable ? 0 : -1;
  el.style.paddingLeft = `${4 + depth * 14}px`;
  el.title = node.camable ? node.name : `${node.name}: ${node.reason || "no CAM possible here"}`;

  const caret = document.createElement("span");
  caret.className = "mt-caret";
  caret.textContent = hasKids ? (open ? CARET_OPEN : CARET_CLOSED) : "";
  if (hasKids) caret.setAttribute("data-toggle", node.name);
  el.appendChild(caret);

  const name = document.createElement("span");
  name.className = "mt-name" + (needle && node.name.toLowerCase().includes(needle) ? " mt-hit" : "");
  name.textContent = node.label;
  el.appendChild(name);

  const type = document.createElement("span");
  type.className = "mt-type";
  type.textContent = node.type;
  el.appendChild(type);

  if (node.recommended) el.appendChild(chip("mt-rec", "\u2605 recommended", node.why || "the recommended layer"));
  for (const hint of node.hints || []) el.appendChild(chip("mt-hint", hint.short, hint.text));

  const shape = document.createElement("span");
  shape.className = "mt-shape";
  shape.textContent = node.shape;
  el.appendChild(shape);
  if (node.recommended && node.why) {  // the rule's one line, under the row it explains
    const why = document.createElement("div");
    why.className = "mt-why";
    why.textContent = node.why;
    el.appendChild(why);
  }
  return el;
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let root = parentElement.querySelector(".mt-root");
  if (!root) root = skeleton(parentElement);
  const st = root._mt;
  st.emit = setTriggerValue;
  // A rerun that changes nothing of the tree (another image, a display change) leaves it as it is:
  // no rebuild, scroll position and focus kept.
  const key = JSON.stringify(data);
  if (st.lastKey === key) return;
  st.lastKey = key;
  const modelChanged = !st.data || st.data.model !== data.model;
  st.data = data;
  st.index = buildIndex(data.nodes);
  root.querySelector(".mt-list").style.maxHeight = `${data.height}px`;

  if (modelChanged || st.expanded === null) {
    // Open the top level and the path to the selected layer.
    st.expanded = new Set();
    for (const node of data.nodes) if (!node.parent) st.expanded.add(node.name);
    if (data.selected) for (const a of ancestors(data.selected, st.index.byName)) st.expanded.add(a);
    st.filter = "";
    root.querySelector(".mt-filter").value = "";
  }
  renderLegend(root, data.nodes);
  render(root);
  if (modelChanged || st.lastSelected !== data.selected) {
    // Scroll the list only (scrollIntoView would scroll the whole page too).
    const list = root.querySelector(".mt-list");
    const sel = list.querySelector(".mt-row.mt-selected");
    if (sel) list.scrollTop = sel.offsetTop - list.offsetTop - list.clientHeight / 2;
  }
  st.lastSelected = data.selected;

  if (!root._mtWired) {
    root._mtWired = true;
    const filter = root.querySelector(".mt-filter");
    filter.addEventListener("input", () => {
      root._mt.filter = filter.value;
      render(root);
    });
    root.querySelector(".mt-toolbar").addEventListener("click", (ev) => {
      const action = ev.target.getAttribute && ev.target.getAttribute("data-action");
      const s = root._mt;
      if (action === "expand") s.expanded = new Set(s.data.nodes.map((n) => n.name));
      else if (action === "collapse") s.expanded = new Set();
      else return;
      render(root);
    });
    const list = root.querySelector(".mt-list");
    const toggle = (name) => {
      const s = root._mt;
      if (s.expanded.has(name)) s.expanded.delete(name);
      else s.expanded.add(name);
      render(root);
      const again = list.querySelector(`[data-layer="${CSS.escape(name)}"]`);
      if (again) again.focus();
    };
    const choose = (rowEl) => {
      const s = root._mt;
      const name = rowEl.getAttribute("data-layer");
      const node = s.index.byName.get(name);
      if (!node || !node.camable || name === s.data.selected) return;
      // Optimistic highlight; Python confirms with the next data.selected.
      list.querySelectorAll(".mt-selected").forEach((r) => r.classList.remove("mt-selected"));
      rowEl.classList.add("mt-selected");
      s.emit("select", name);
    };
    list.addEventListener("click", (ev) => {
      const caret = ev.target.closest("[data-toggle]");
      if (caret) return toggle(caret.getAttribute("data-toggle"));
      const rowEl = ev.target.closest(".mt-row");
      if (rowEl) choose(rowEl);
    });
    list.addEventListener("keydown", (ev) => {
      const rowEl = ev.target.closest(".mt-row");
      if (!rowEl) return;
      const name = rowEl.getAttribute("data-layer");
      const expanded = rowEl.getAttribute("aria-expanded");
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        choose(rowEl);
      } else if (ev.key === "ArrowRight" && expanded === "false") {
        toggle(name);
      } else if (ev.key === "ArrowLeft" && expanded === "true") {
        toggle(name);
      } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
        ev.preventDefault();
        const rows = [...list.querySelectorAll(".mt-row")];
        const next = rows[rows.indexOf(rowEl) + (ev.key === "ArrowDown" ? 1 : -1)];
        if (next) next.focus();
      }
    });
  }
}
