import assert from "node:assert/strict";
import { test } from "node:test";
import { EphapticError, isEphapticError } from "../../dist/index.js";

test("an error map becomes {code, message, data}", () => {
  const e = EphapticError.fromWire({ code: "INSUFFICIENT_FUNDS", message: "Not enough funds.", data: { available: 3 } });
  assert.ok(e instanceof Error);
  assert.ok(e instanceof EphapticError);
  assert.equal(e.name, "EphapticError");
  assert.equal(e.code, "INSUFFICIENT_FUNDS");
  assert.equal(e.message, "Not enough funds.");
  assert.deepEqual(e.data, { available: 3 });
});

test("a missing data becomes null", () => {
  const e = EphapticError.fromWire({ code: "NOT_FOUND", message: "Function 'x' not found." });
  assert.equal(e.data, null);
});

test("a bare-string error (old servers) maps to code ERROR", () => {
  const e = EphapticError.fromWire("something broke");
  assert.equal(e.code, "ERROR");
  assert.equal(e.message, "something broke");
  assert.equal(e.data, null);
});

test("an error map without a code still gives an EphapticError", () => {
  const e = EphapticError.fromWire({ message: "odd" });
  assert.equal(e.code, "ERROR");
  assert.equal(e.message, "odd");
  const f = EphapticError.fromWire(42);
  assert.equal(f.code, "ERROR");
  assert.equal(f.data, 42);
});

test("isEphapticError checks the class and, optionally, the code", () => {
  const e = new EphapticError("TIMEOUT", "late", null);
  assert.equal(isEphapticError(e), true);
  assert.equal(isEphapticError(e, "TIMEOUT"), true);
  assert.equal(isEphapticError(e, "DISCONNECTED"), false);
  assert.equal(isEphapticError(new Error("x")), false);
  assert.equal(isEphapticError({ code: "TIMEOUT" }), false);
  // An error from another copy of the package is recognised by its shape.
  const foreign = Object.assign(new Error("x"), { name: "EphapticError", code: "TIMEOUT" });
  assert.equal(isEphapticError(foreign, "TIMEOUT"), true);
});
