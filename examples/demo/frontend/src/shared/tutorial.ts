// The Events tutorial's texts, shared by both frontends.
import type { Reach, SomethingHappened } from "../schema";

/** How a received event was sent and by whom, as the server labelled it: "to(1) from Bob". */
export function sentBy(e: SomethingHappened): string {
  return `${e.via} from ${e.from?.name ?? "a signed-out page"}`;
}

/**
 * What a notify function answered: its event was sent, and how many connections of this server
 * it reached. Only this server's: with `--redis` the other servers' connections get it too,
 * uncounted (so 0 here does not mean nobody got it).
 */
export function reachText(r: Reach): string {
  const here = `${r.here} connection${r.here === 1 ? "" : "s"} on this server`;
  return r.published ? `sent · ${here}, and to the other servers` : `sent · ${here}`;
}
