// Starts the Rust parity server (examples/parity) for integration tests, on 127.0.0.1 only.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import { connect, type Client, type ConnectOptions } from "../../dist/index.js";
import { startProxy, type Proxy } from "./proxy.js";

/** This file runs from .test-build/helpers/, four levels below the repository root. */
export const REPO_ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
export const PACKAGE_DIR = fileURLToPath(new URL("../../", import.meta.url));

export function parityBin(): string {
  if (process.env.PARITY_BIN) return resolve(process.env.PARITY_BIN);
  const target = process.env.CARGO_TARGET_DIR ? resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR) : resolve(REPO_ROOT, "target");
  return resolve(target, "debug", "parity");
}

export interface Parity {
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  /** What the server wrote to stderr so far (its log). */
  log(): string;
  /** Stops it; `kill` = SIGKILL, as a crash would. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts parity on `port` (0: a free one) with `args` besides `--addr` (e.g. `--history-size 50`). */
export async function startParity(port = 0, args: readonly string[] = []): Promise<Parity> {
  const bin = parityBin();
  if (!existsSync(bin)) {
    throw new Error(`The parity server is not built: ${bin} is missing. Run \`cargo build -p parity\` or set PARITY_BIN.`);
  }
  // A port just released may take a moment to be bindable again.
  for (let attempt = 0; ; attempt++) {
    try {
      return await spawnOnce(bin, port, args);
    } catch (error) {
      if (port === 0 || attempt >= 20 || !/in use/i.test(String(error))) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function spawnOnce(bin: string, port: number, args: readonly string[]): Promise<Parity> {
  const child = spawn(bin, ["--addr", `127.0.0.1:${port}`, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, EPHAPTIC_LOG: process.env.EPHAPTIC_LOG ?? "warn" },
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (d: string) => (stderr += d));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return new Promise<Parity>((resolvePromise, reject) => {
    let stdout = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`parity did not print its address within 15 s; stderr:\n${stderr}`));
    }, 15_000);
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (d: string) => {
      stdout += d;
      const line = stdout.split("\n")[0];
      if (!stdout.includes("\n")) return;
      const m = /^listening on (ws:\/\/127\.0\.0\.1:(\d+)\/_ephaptic)\s*$/.exec(line ?? "");
      clearTimeout(timer);
      if (!m) {
        child.kill("SIGKILL");
        reject(new Error(`unexpected first line from parity: ${JSON.stringify(line)}`));
        return;
      }
      resolvePromise({
        url: m[1]!,
        port: Number(m[2]),
        process: child,
        log: () => stderr,
        stop: async (signal: NodeJS.Signals = "SIGTERM") => {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          await exited;
        },
      });
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`parity exited (${code ?? signal}) before listening; stderr:\n${stderr}`));
    });
  });
}

// Runtime tests use the untyped client: the schema's types are checked by test/types.test-d.ts
// (examples/parity/schema.ts lies outside this package's compilation root).
export type ParityClient = Client;

/** A client of the parity server over the `ws` package, as a Node 20 app would make it. */
export function parityClient(url: string, options: ConnectOptions = {}): ParityClient {
  return connect({ url, WebSocket, ...options });
}

export interface ParityFixture {
  /** The server, started in `before()`. */
  readonly server: Parity;
  /** The TCP proxy in front of it (helpers/proxy.ts), with `{ proxy: true }`. */
  readonly proxy: Proxy;
  /** Adds `client` to the ones disconnected after the file's tests; returns it. */
  track<C extends { disconnect(): void }>(client: C): C;
}

/**
 * The shared preamble of an integration test file: starts parity (and with `proxy`, a proxy in
 * front of it) before the file's tests; after them disconnects every tracked client, then closes
 * the proxy and stops the server. Call it once, at the top level of the file.
 */
export function parityFixture({ proxy: withProxy = false }: { proxy?: boolean } = {}): ParityFixture {
  let server: Parity | undefined;
  let proxy: Proxy | undefined;
  const clients: Array<{ disconnect(): void }> = [];
  before(async () => {
    server = await startParity();
    if (withProxy) proxy = await startProxy(server.port);
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await proxy?.close();
    await server?.stop();
  });
  return {
    get server(): Parity {
      if (!server) throw new Error("parity is not started (parityFixture's before() has not run)");
      return server;
    },
    get proxy(): Proxy {
      if (!proxy) throw new Error(withProxy ? "the proxy is not started yet" : "parityFixture() was called without { proxy: true }");
      return proxy;
    },
    track(client) {
      clients.push(client);
      return client;
    },
  };
}

/** Resolves when `check` passes; fails with `what` after `ms`. */
export async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
