type Waiter<T> = {
  resolve: (r: IteratorResult<T, undefined>) => void;
  reject: (e: unknown) => void;
};

/**
 * What awaiting a streaming call gives: an async iterator over the stream's chunks.
 *
 * ```ts
 * for await (const n of await client.countdown(3)) console.log(n); // 3, 2, 1
 * ```
 *
 * Every chunk is delivered, falsy ones (`0`, `null`, `false`, `""`) included. A failure the server
 * reports mid-stream rejects the iteration after the chunks that came before it. Leaving the loop
 * early (`break`, `return`, a thrown error) or calling `return()` tells the server to stop the
 * stream. Chunks that arrive before they are read are buffered.
 */
export class EphapticStream<T = unknown> implements AsyncIterableIterator<T, undefined> {
  // A plain array read from `head`, compacted now and then: shift() is O(n) per chunk.
  private items: T[] = [];
  private head = 0;
  private waiters: Waiter<T>[] = [];
  /** No more chunks will come: the server finished, failed, or the consumer stopped reading. */
  private ended = false;
  private failure: { error: unknown } | undefined;
  private readonly onCancel: () => void;

  /** @internal Streams are made by the client; `onCancel` runs when the consumer stops early. */
  constructor(onCancel: () => void) {
    this.onCancel = onCancel;
  }

  /** @internal */
  push(value: T): void {
    if (this.ended) return;
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve({ value, done: false });
    else this.items.push(value);
  }

  /** @internal The server finished the stream. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
  }

  /** @internal The stream failed: the error is thrown once the buffered chunks are read. */
  fail(error: unknown): void {
    if (this.ended) return;
    this.ended = true;
    const waiters = this.waiters.splice(0);
    if (waiters.length > 0) {
      // Waiters exist only when the buffer is empty, so the first one gets the error now.
      waiters[0]!.reject(error);
      for (const w of waiters.slice(1)) w.resolve({ value: undefined, done: true });
    } else {
      this.failure = { error };
    }
  }

  /** Whether the stream can still produce chunks. */
  get open(): boolean {
    return !this.ended;
  }

  next(): Promise<IteratorResult<T, undefined>> {
    if (this.head < this.items.length) {
      const value = this.items[this.head] as T;
      this.items[this.head] = undefined as T;
      this.head++;
      if (this.head === this.items.length) {
        this.items = [];
        this.head = 0;
      } else if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.failure) {
      const { error } = this.failure;
      this.failure = undefined;
      return Promise.reject(error);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Stops reading: the server is told to stop the stream, and buffered chunks are dropped. */
  return(): Promise<IteratorResult<T, undefined>> {
    const wasOpen = !this.ended;
    this.ended = true;
    this.failure = undefined;
    this.items = [];
    this.head = 0;
    for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
    if (wasOpen) this.onCancel();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Reads the whole stream into an array (never ends for an endless stream). */
  async toArray(): Promise<T[]> {
    const out: T[] = [];
    for await (const chunk of this) out.push(chunk);
    return out;
  }
}
