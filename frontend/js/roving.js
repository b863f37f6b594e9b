// One Tab stop per card: inside a card, only the control last used is in the tab order; the arrow
// keys (and Home / End) move between the card's links and buttons (a "roving tabindex").

const CONTROLS = "a[href], button:not([hidden])";

function controls(container) {
  return [...container.querySelectorAll(CONTROLS)].filter((element) => !element.closest("[hidden]"));
}

/** Make `current` the card's one tab stop. */
export function setTabStop(container, current) {
  for (const element of controls(container)) element.tabIndex = element === current ? 0 : -1;
}

/** Re-apply the tab stop after the card's controls changed (a Retry button came or went). */
export function refreshTabStop(container) {
  const items = controls(container);
  const current = items.find((element) => element.tabIndex === 0) || items[0];
  if (current) setTabStop(container, current);
}

const STEPS = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };

/** Wire a card: arrow keys move the focus (and the tab stop) among its controls. */
export function rovingCard(container) {
  container.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const items = controls(container);
    const index = items.indexOf(document.activeElement);
    if (index < 0) return;
    let next = null;
    if (event.key in STEPS) next = items[(index + STEPS[event.key] + items.length) % items.length];
    else if (event.key === "Home") next = items[0];
    else if (event.key === "End") next = items[items.length - 1];
    if (!next) return;
    event.preventDefault();
    setTabStop(container, next);
    next.focus();
  });
  container.addEventListener("focusin", (event) => {
    if (controls(container).includes(event.target)) setTabStop(container, event.target);
  });
  refreshTabStop(container);
}
