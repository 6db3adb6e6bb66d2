import assert from "node:assert/strict";
import { test } from "node:test";
import { resolveUrl } from "../../dist/index.js";

const page = { href: "https://app.example.com/dashboard/settings?tab=1" };
const plainPage = { href: "http://localhost:5173/" };

test("an absolute ws/wss URL is used as given", () => {
  assert.equal(resolveUrl("ws://127.0.0.1:8000/_ephaptic", undefined), "ws://127.0.0.1:8000/_ephaptic");
  assert.equal(resolveUrl("wss://api.example.com/rt?x=1", page), "wss://api.example.com/rt?x=1");
});

test("http and https URLs are rewritten to ws and wss", () => {
  assert.equal(resolveUrl("http://127.0.0.1:8000/_ephaptic", undefined), "ws://127.0.0.1:8000/_ephaptic");
  assert.equal(resolveUrl("https://api.example.com/_ephaptic", undefined), "wss://api.example.com/_ephaptic");
  assert.equal(resolveUrl("HTTPS://API.example.com/_ephaptic", undefined), "wss://api.example.com/_ephaptic");
});

test("a relative URL is resolved against the page, keeping its security", () => {
  assert.equal(resolveUrl("/_ephaptic", page), "wss://app.example.com/_ephaptic");
  assert.equal(resolveUrl("ws", page), "wss://app.example.com/dashboard/ws");
  assert.equal(resolveUrl("../rt", page), "wss://app.example.com/rt");
  assert.equal(resolveUrl("//other.example.com/_ephaptic", page), "wss://other.example.com/_ephaptic");
  assert.equal(resolveUrl("/_ephaptic", plainPage), "ws://localhost:5173/_ephaptic");
});

test("no URL means the page's host at /_ephaptic", () => {
  assert.equal(resolveUrl(undefined, page), "wss://app.example.com/_ephaptic");
  assert.equal(resolveUrl(undefined, plainPage), "ws://localhost:5173/_ephaptic");
});

test("a URL object is accepted", () => {
  assert.equal(resolveUrl(new URL("http://127.0.0.1:9/x"), undefined), "ws://127.0.0.1:9/x");
});

test("outside a browser a relative or missing URL is an error that says what to pass", () => {
  assert.throws(() => resolveUrl(undefined, undefined), (e: Error) => e instanceof TypeError && /needs a url/.test(e.message));
  assert.throws(() => resolveUrl("/_ephaptic", undefined), (e: Error) => e instanceof TypeError && /absolute URL/.test(e.message));
});

test("an unsupported scheme is rejected", () => {
  assert.throws(() => resolveUrl("ftp://example.com/x", page), /Unsupported URL scheme "ftp:"/);
});
