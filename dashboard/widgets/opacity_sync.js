// Opacity sync (st.components.v2, no build step): the overlay figures' own opacity sliders work in the
// browser (a Plotly restyle, no rerun); this reports where the user left one, so Python starts every
// figure there after a rerun and the exported PNGs use it.
//
// data = {selector: "CSS selector of the figures' plot divs", opacity: current value}
// Emits one state value, "opacity" (a number), when a slider is released at a new stop (not during a drag).

export default function ({ data, setStateValue, parentElement }) {
  const root = parentElement.querySelector ? parentElement : document;
  const host = root.querySelector(".os-root") || document.createElement("div");
  host.className = "os-root";
  if (!host.parentNode) parentElement.appendChild(host);
  host._os = { selector: data.selector, last: data.opacity };

  const attach = () => {
    for (const gd of document.querySelectorAll(host._os.selector)) {
      if (gd._camOpacitySync || typeof gd.on !== "function") continue;
      gd._camOpacitySync = true;
      // "sliderend", not "sliderchange": a rerun in the middle of a drag would cut the drag short.
      gd.on("plotly_sliderend", (ev) => {
        const value = parseFloat(ev && ev.step ? ev.step.label : NaN);
        if (!Number.isFinite(value) || value === host._os.last) return;
        host._os.last = value;
        setStateValue("opacity", value);
      });
    }
  };
  attach();
  if (!host._os.timer) host._os.timer = setInterval(attach, 400);
  return () => {
    clearInterval(host._os.timer);
    host._os.timer = null;
  };
}
