// What the light and dark tests measure: text below 4.5:1 (WCAG AA) on a
// page (docs/CONSOLE.md, "Keyboard and dark mode").

// Each element's own text against the first background behind it that is
// not transparent; what is below 4.5:1. Hidden and disabled text is not
// read (WCAG exempts inactive controls).
export const lowContrast = (p) =>
  p.evaluate(() => {
    const rgb = (s) => (s.match(/[\d.]+/g) ?? []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (c) => ((c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const ratio = (a, b) => (Math.max(lum(a), lum(b)) + 0.05) / (Math.min(lum(a), lum(b)) + 0.05);
    const background = (e) => {
      for (let x = e; x !== null; x = x.parentElement) {
        const c = rgb(getComputedStyle(x).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
      }
      return matchMedia("(prefers-color-scheme: dark)").matches ? [0, 0, 0] : [255, 255, 255];
    };
    const low = [];
    for (const e of document.querySelectorAll("body *")) {
      if (!(e instanceof HTMLElement) || ["SCRIPT", "STYLE", "OPTION", "SELECT", "NOSCRIPT"].includes(e.tagName)) continue;
      const own = [...e.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim() !== "");
      if (!own || e.getClientRects().length === 0 || e.closest(".sr-only, :disabled") !== null) continue;
      let fg = rgb(getComputedStyle(e).color);
      const bg = background(e);
      if (fg.length === 4) fg = fg.slice(0, 3).map((c, i) => c * fg[3] + bg[i] * (1 - fg[3]));
      const r = ratio(fg, bg);
      if (r < 4.5) low.push(`${e.tagName} "${e.textContent.trim().slice(0, 40)}" ${r.toFixed(2)}:1`);
    }
    return low;
  });
