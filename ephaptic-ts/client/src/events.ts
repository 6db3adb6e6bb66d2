export type Listener = (data: any) => unknown;

interface Entry {
  readonly callback: Listener;
  readonly once: boolean;
  active: boolean;
}

/**
 * Event listeners by event name. Arrays are replaced, never changed in place, so a dispatch walks
 * the listeners present when it started; one removed meanwhile (by `off` or by its own `once`) is
 * skipped.
 */
export class EventRegistry {
  private readonly byName = new Map<string, readonly Entry[]>();

  /**
   * Adds `callback` for `event`; adding the same callback twice has no further effect. Returns a
   * function that removes it (only the `on` registration: a `once` of the same callback stays).
   */
  on(event: string, callback: Listener): () => void {
    return this.add(event, callback, false);
  }

  /** Adds `callback` for the next `event` only; returns a function that removes it. */
  once(event: string, callback: Listener): () => void {
    return this.add(event, callback, true);
  }

  /** Removes `callback` (whether added by `on` or `once`), or every listener of `event` without one. */
  off(event: string, callback?: Listener): void {
    const list = this.byName.get(event);
    if (!list) return;
    const keep: Entry[] = [];
    for (const e of list) {
      if (callback === undefined || e.callback === callback) e.active = false;
      else keep.push(e);
    }
    if (keep.length === 0) this.byName.delete(event);
    else this.byName.set(event, keep);
  }

  listenerCount(event: string): number {
    return this.byName.get(event)?.length ?? 0;
  }

  /**
   * Calls every listener of `event` with `data`. A listener that throws (or whose promise rejects)
   * is reported through `report` and does not stop the others. Returns how many were called.
   */
  emit(event: string, data: unknown, report: (error: unknown) => void): number {
    const list = this.byName.get(event);
    if (!list) return 0;
    let called = 0;
    for (const entry of list) {
      if (!entry.active) continue;
      if (entry.once) this.remove(event, entry);
      called++;
      try {
        const result = entry.callback(data);
        if (result !== null && typeof result === "object" && typeof (result as Promise<unknown>).then === "function") {
          (result as Promise<unknown>).then(undefined, report);
        }
      } catch (error) {
        report(error);
      }
    }
    return called;
  }

  private add(event: string, callback: Listener, once: boolean): () => void {
    if (typeof callback !== "function") {
      throw new TypeError(`The listener for event ${JSON.stringify(event)} must be a function.`);
    }
    const list = this.byName.get(event) ?? [];
    const existing = list.find((e) => e.callback === callback && e.once === once);
    const entry = existing ?? { callback, once, active: true };
    if (!existing) this.byName.set(event, [...list, entry]);
    return () => this.remove(event, entry);
  }

  private remove(event: string, entry: Entry): void {
    entry.active = false;
    const list = this.byName.get(event);
    if (!list) return;
    const keep = list.filter((e) => e !== entry);
    if (keep.length === 0) this.byName.delete(event);
    else this.byName.set(event, keep);
  }
}

/**
 * The value an event's listeners receive: `payload.kwargs` (for an event made from a struct, its
 * fields); when `kwargs` is empty and `args` has exactly one element, that element (how the Rust
 * server sends a channel payload that is not a map); when `kwargs` is empty and `args` has several,
 * the `args` list.
 */
export function eventData(payload: unknown): unknown {
  if (payload === null || typeof payload !== "object") return {};
  const { args, kwargs } = payload as { args?: unknown; kwargs?: unknown };
  const hasKwargs =
    kwargs !== null && typeof kwargs === "object" && !Array.isArray(kwargs) && Object.keys(kwargs).length > 0;
  if (hasKwargs) return kwargs;
  if (Array.isArray(args)) {
    if (args.length === 1) return args[0];
    if (args.length > 1) return args;
  }
  return kwargs !== null && typeof kwargs === "object" && !Array.isArray(kwargs) ? kwargs : {};
}
