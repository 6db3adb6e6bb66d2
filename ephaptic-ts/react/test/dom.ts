// A DOM for react-dom in Node (happy-dom), installed before React is imported.
import { Window } from "happy-dom";

const window = new Window({ url: "http://127.0.0.1/" });
const g = globalThis as Record<string, unknown>;
for (const key of ["window", "document", "navigator", "HTMLElement", "Node", "Element", "Event", "MutationObserver"]) {
  if (!(key in g) || key === "window" || key === "document") {
    Object.defineProperty(g, key, { value: key === "window" ? window : (window as unknown as Record<string, unknown>)[key], configurable: true, writable: true });
  }
}
g.IS_REACT_ACT_ENVIRONMENT = true;
