// The names the client's proxy never turns into remote calls. ephaptic-ts reads the string literals
// of this file (render.rs, `NOT_PROXIED`) so that the generated `EphapticService` does not offer
// functions the client cannot reach: keep it a plain list of names.

/**
 * Names tools probe on any object: `then` (so `await client` is not a call), `toJSON`
 * (`JSON.stringify`), `$$typeof` (React), `asymmetricMatch` (Jest), `nodeType` and `tagName` (DOM
 * checks).
 */
export const PROBED_NAMES: readonly string[] = ["then", "toJSON", "$$typeof", "asymmetricMatch", "nodeType", "tagName"];

/** `Object.prototype`'s names, which every object has (a unit test compares it with the runtime's). */
export const OBJECT_PROTOTYPE_NAMES: readonly string[] = [
  "__defineGetter__",
  "__defineSetter__",
  "__lookupGetter__",
  "__lookupSetter__",
  "__proto__",
  "constructor",
  "hasOwnProperty",
  "isPrototypeOf",
  "propertyIsEnumerable",
  "toLocaleString",
  "toString",
  "valueOf",
];

/** Never a remote call: call functions with these names with `client.call(name, ...)`. */
export const NOT_PROXIED: ReadonlySet<string> = new Set([...PROBED_NAMES, ...OBJECT_PROTOTYPE_NAMES]);
