// An in-memory WebSocket the unit tests drive by hand: they decide when it opens, what it
// receives and when it drops, and read every frame the client sent, decoded.
import { decode, encode } from "@msgpack/msgpack";

export interface FakeSocket {
  readonly url: string;
  binaryType: string;
  readyState: number;
  onopen: ((event: unknown) => unknown) | null;
  onmessage: ((event: { data: unknown }) => unknown) | null;
  onclose: ((event: { code: number; reason: string }) => unknown) | null;
  onerror: ((event: unknown) => unknown) | null;
  /** Every frame the client sent, decoded (64-bit integers as bigint). */
  readonly sent: Array<Record<string, unknown>>;
  closedByClient: { code?: number; reason?: string } | undefined;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  /** Test controls. */
  open(): void;
  receive(frame: unknown): void;
  receiveRaw(data: unknown): void;
  drop(code?: number, reason?: string): void;
  /** Sent frames of one type (`rpc`, `cancel`, `init`). */
  frames(type: string): Array<Record<string, unknown>>;
}

export function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** Encodes like a server that writes 64-bit integers for bigint values. */
export function wire(frame: unknown): ArrayBuffer {
  return toArrayBuffer(encode(frame, { useBigInt64: true }));
}

export function fakeWebSocket() {
  const sockets: FakeSocket[] = [];
  class FakeWebSocket implements FakeSocket {
    binaryType = "blob";
    readyState = 0;
    onopen: FakeSocket["onopen"] = null;
    onmessage: FakeSocket["onmessage"] = null;
    onclose: FakeSocket["onclose"] = null;
    onerror: FakeSocket["onerror"] = null;
    readonly sent: Array<Record<string, unknown>> = [];
    closedByClient: { code?: number; reason?: string } | undefined;
    constructor(readonly url: string) {
      sockets.push(this);
    }
    send(data: Uint8Array): void {
      if (this.readyState !== 1) throw new Error(`send() in readyState ${this.readyState}`);
      this.sent.push(decode(data, { useBigInt64: true }) as Record<string, unknown>);
    }
    close(code?: number, reason?: string): void {
      if (this.readyState === 3) return;
      this.closedByClient = { code, reason };
      this.readyState = 3;
      this.onclose?.({ code: code ?? 1005, reason: reason ?? "" });
    }
    open(): void {
      this.readyState = 1;
      this.onopen?.({});
    }
    receive(frame: unknown): void {
      this.onmessage?.({ data: wire(frame) });
    }
    receiveRaw(data: unknown): void {
      this.onmessage?.({ data });
    }
    drop(code = 1006, reason = ""): void {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
    frames(type: string): Array<Record<string, unknown>> {
      return this.sent.filter((f) => f.type === type);
    }
  }
  return {
    WebSocket: FakeWebSocket,
    sockets,
    /** The socket the client opened most recently. */
    last(): FakeSocket {
      const s = sockets[sockets.length - 1];
      if (!s) throw new Error("the client opened no socket");
      return s;
    },
  };
}

/** Lets pending promise callbacks run. */
export async function flush(times = 5): Promise<void> {
  for (let i = 0; i < times; i++) await new Promise<void>((r) => setImmediate(r));
}

/** A logger that records instead of printing. */
export function recordingLogger() {
  const warnings: string[] = [];
  const errors: unknown[][] = [];
  return {
    warnings,
    errors,
    logger: {
      warn: (...args: unknown[]) => void warnings.push(args.map(String).join(" ")),
      error: (...args: unknown[]) => void errors.push(args),
    },
  };
}
