import assert from "node:assert/strict";
import { test } from "node:test";
import * as entry from "../../dist/index.js";

// The entry point is the package's public API; helpers (timeout normalisation, the backoff
// schedule) stay in their modules, where their tests import them from.
test("the entry point exports the public API and nothing else", () => {
  assert.deepEqual(Object.keys(entry).sort(), [
    "DEFAULT_BACKOFF",
    "DEFAULT_CONNECT_TIMEOUT_MS",
    "DEFAULT_PATH",
    "DEFAULT_TIMEOUT_MS",
    "EphapticError",
    "EphapticStream",
    "Presence",
    "SESSION_ENDED_CLOSE_CODE",
    "connect",
    "isEphapticError",
    "resolveUrl",
  ]);
});
