/** The parts of `window.location` URL resolution reads. */
export interface LocationLike {
  readonly href: string;
}

export const DEFAULT_PATH = "/_ephaptic";

export function pageLocation(): LocationLike | undefined {
  const loc = (globalThis as { location?: unknown }).location;
  if (loc && typeof (loc as LocationLike).href === "string") return loc as LocationLike;
  return undefined;
}

/**
 * Resolves the WebSocket URL to connect to:
 * - absent: the page's own host at `/_ephaptic` (`wss:` on an `https:` page);
 * - absolute `ws:`/`wss:`: as given; `http:`/`https:`: rewritten to `ws:`/`wss:`;
 * - relative (`/_ephaptic`, `api/ws`, `//host/path`): resolved against the page's location.
 *
 * Outside a browser there is no page, so the URL must be absolute.
 */
export function resolveUrl(url?: string | { readonly href: string }, location: LocationLike | undefined = pageLocation()): string {
  const raw = url === undefined ? DEFAULT_PATH : typeof url === "string" ? url : url.href;
  let parsed: URL;
  try {
    parsed = location ? new URL(raw, location.href) : new URL(raw);
  } catch {
    if (!location && url === undefined) {
      throw new TypeError(
        `connect() needs a url outside a browser (there is no page to take the host from), ` +
          `e.g. connect({ url: "ws://127.0.0.1:8000/_ephaptic" }).`,
      );
    }
    if (!location) {
      throw new TypeError(
        `Cannot resolve the ephaptic URL ${JSON.stringify(raw)}: there is no page location to resolve it against ` +
          `(not in a browser). Pass an absolute URL, e.g. connect({ url: "ws://127.0.0.1:8000/_ephaptic" }).`,
      );
    }
    throw new TypeError(`Invalid ephaptic URL ${JSON.stringify(raw)}.`);
  }
  switch (parsed.protocol) {
    case "ws:":
    case "wss:":
      break;
    case "http:":
      parsed.protocol = "ws:";
      break;
    case "https:":
      parsed.protocol = "wss:";
      break;
    default:
      throw new TypeError(
        `Unsupported URL scheme ${JSON.stringify(parsed.protocol)} in ${JSON.stringify(raw)}: use ws:, wss:, http: or https:.`,
      );
  }
  parsed.hash = "";
  return parsed.toString();
}

/** Whether `url` needs a page to resolve against (it is relative, or absent). */
export function needsPage(url?: string | { readonly href: string }): boolean {
  const raw = url === undefined ? DEFAULT_PATH : typeof url === "string" ? url : url.href;
  try {
    new URL(raw);
    return false;
  } catch {
    return true;
  }
}
