/**
 * A byte ring in shared memory: the pipe of our queues and pool channels. Bytes go in at the tail
 * and out at the head; positions are uint32 counters that wrap (the capacity is a power of two).
 * Readers wait on DATA_SEQ, writers on SPACE_SEQ, through futex.ts (Atomics for thread memory, the
 * addon for process memory); a wake is a syscall only when somebody is waiting.
 *
 * Messages are frames: a 4-byte little-endian length, then the body. A frame longer than the ring
 * streams through it while its reader reads. Whoever writes (or reads) a frame must be the only
 * writer (reader) meanwhile: queues hold a lock, pool channels have one writer and one reader.
 *
 * Serialised values travel as frames through ringMessages.ts (queues, pool channels, the manager
 * lane): written whole with the frame's header in the serialiser's headroom, decoded in place.
 */
import { park, wake, type Steps } from './futex.js';

/** Bytes a frame starts with: its body's length (little-endian uint32). */
export const LENGTH_BYTES = 4;

/** Words a ring uses at the start of its Int32Array. */
export const RING_WORDS = 7;
const HEAD = 0; // bytes read so far
const TAIL = 1; // bytes written so far
const DATA_SEQ = 2; // bumped after every write
const SPACE_SEQ = 3; // bumped when a waiting writer is woken
const DATA_WAITERS = 4;
const SPACE_WAITERS = 5;
const SPACE_WAKE_PENDING = 6; // a wake is on its way to the writer: do not send another
const SPACE_RECHECK_MS = 100;

/** What `tryDecodeFrame` returns when no whole frame has arrived. */
export const NO_FRAME: unique symbol = Symbol('no frame');

export class ByteRing {
  private readonly capacity: number;
  private readonly mask: number;

  /** `words`: RING_WORDS words of this ring; `data`: its bytes (a power-of-two length). */
  constructor(readonly words: Int32Array, readonly data: Uint8Array) {
    this.capacity = data.length;
    this.mask = data.length - 1;
    if ((this.capacity & this.mask) !== 0) throw new RangeError('ring capacity must be a power of two');
  }

  /** Bytes waiting to be read. */
  available(): number {
    return (Atomics.load(this.words, TAIL) - Atomics.load(this.words, HEAD)) >>> 0;
  }

  /** Whether a reader is asleep waiting for data (then a write is worth its wake-up at once). */
  readerWaiting(): boolean {
    return Atomics.load(this.words, DATA_WAITERS) > 0;
  }

  /** Bytes that can be written without waiting. */
  free(): number {
    return this.capacity - this.available();
  }

  /** Copies as much of `src` as fits; returns how many bytes were written. */
  write(src: Uint8Array): number {
    const tail = Atomics.load(this.words, TAIL) >>> 0;
    const n = Math.min(this.capacity - ((tail - (Atomics.load(this.words, HEAD) >>> 0)) >>> 0), src.length);
    if (n === 0) return 0;
    this.copyIn(n === src.length ? src : src.subarray(0, n), tail);
    this.publish(tail, n);
    return n;
  }

  /** Writes the whole frames of `list[from..]` that fit, and makes them visible to the reader at
   * once (one wake-up check for the lot); returns the index after the last one written and the
   * bytes written. A frame is never cut: another writer may follow. */
  writeWhatFits(list: readonly Uint8Array[], from: number): { end: number; bytes: number } {
    const free = this.free();
    let end = from;
    let bytes = 0;
    while (end < list.length && bytes + list[end]!.length <= free) bytes += list[end++]!.length;
    if (end === from) return { end, bytes };
    const tail = Atomics.load(this.words, TAIL) >>> 0;
    let at = tail;
    for (let i = from; i < end; i++) {
      this.copyIn(list[i]!, at);
      at = (at + list[i]!.length) >>> 0;
    }
    this.publish(tail, bytes);
    return { end, bytes };
  }

  /** Copies `src` in at stream position `pos` (wrapping at the end of the ring). */
  private copyIn(src: Uint8Array, pos: number): void {
    const at = pos & this.mask;
    const first = Math.min(src.length, this.capacity - at);
    this.data.set(first === src.length ? src : src.subarray(0, first), at);
    if (src.length > first) this.data.set(src.subarray(first), 0);
  }

  /** Moves the tail past `n` written bytes and wakes a sleeping reader. */
  private publish(tail: number, n: number): void {
    const w = this.words;
    Atomics.store(w, TAIL, (tail + n) | 0);
    Atomics.add(w, DATA_SEQ, 1);
    if (Atomics.load(w, DATA_WAITERS) > 0) wake(w, DATA_SEQ);
  }

  /** Copies available bytes into `dest` from `offset` on; returns how many. */
  read(dest: Uint8Array, offset = 0): number {
    return this.consume(dest, offset, 0);
  }

  /** Skips `skip` bytes, then copies what is available into `dest` from `offset` on; returns how
   * many were copied. The caller knows that `skip` bytes have arrived. */
  private consume(dest: Uint8Array, offset: number, skip: number): number {
    const w = this.words;
    const head = Atomics.load(w, HEAD) >>> 0;
    const start = (head + skip) >>> 0;
    const n = Math.min(((Atomics.load(w, TAIL) >>> 0) - start) >>> 0, dest.length - offset);
    if (n === 0 && skip === 0) return 0;
    const at = start & this.mask;
    const first = Math.min(n, this.capacity - at);
    dest.set(this.data.subarray(at, at + first), offset);
    if (n > first) dest.set(this.data.subarray(0, n - first), offset + first);
    this.release((start + n) | 0);
    return n;
  }

  /** Moves the head to `head` (the bytes before it are read) and wakes a writer waiting for space:
   * once half the ring is free, and once only until it has run, so that a reader draining item
   * after item does not make a system call per item. */
  private release(head: number): void {
    const w = this.words;
    Atomics.store(w, HEAD, head);
    if (
      Atomics.load(w, SPACE_WAITERS) > 0 &&
      this.available() <= this.capacity >>> 1 &&
      Atomics.compareExchange(w, SPACE_WAKE_PENDING, 0, 1) === 0
    ) {
      Atomics.add(w, SPACE_SEQ, 1);
      wake(w, SPACE_SEQ);
    }
  }

  /** The next frame's length if its 4-byte header has fully arrived, without consuming it. */
  peekLength(): number | null {
    if (this.available() < 4) return null;
    const at = Atomics.load(this.words, HEAD) & this.mask;
    const d = this.data;
    const m = this.mask;
    return (d[at]! | (d[(at + 1) & m]! << 8) | (d[(at + 2) & m]! << 16) | (d[(at + 3) & m]! << 24)) >>> 0;
  }

  // ---- waiting (as futex.ts steps: `runAsync(ring.readFrame())`, `runSync(...)` for *Sync) ----

  /** Waits until some bytes are available; false when `deadline` (performance.now()) passes first. */
  *waitForData(deadline = Infinity): Steps<boolean> {
    const w = this.words;
    while (this.available() === 0) {
      const seq = Atomics.load(w, DATA_SEQ);
      if (this.available() > 0) break;
      if (performance.now() >= deadline) return false;
      Atomics.add(w, DATA_WAITERS, 1);
      try {
        yield park(w, DATA_SEQ, seq, deadline);
      } finally {
        Atomics.sub(w, DATA_WAITERS, 1);
      }
    }
    return true;
  }

  /** Waits until the ring has room for at least one byte. */
  *waitForSpace(): Steps<void> {
    const w = this.words;
    while (this.available() >= this.capacity) {
      const seq = Atomics.load(w, SPACE_SEQ);
      if (this.available() < this.capacity) return;
      Atomics.add(w, SPACE_WAITERS, 1);
      try {
        // Bounded: should a writer that was sent the one pending wake die before taking it, the
        // next one still looks again.
        if (this.available() >= this.capacity) yield park(w, SPACE_SEQ, seq, performance.now() + SPACE_RECHECK_MS);
      } finally {
        Atomics.sub(w, SPACE_WAITERS, 1);
        Atomics.store(w, SPACE_WAKE_PENDING, 0);
      }
    }
  }

  // ---- whole transfers --------------------------------------------------------------------

  /** Writes all of `src`, waiting for space as the reader drains the ring. */
  *writeAll(src: Uint8Array): Steps<void> {
    let done = this.write(src);
    while (done < src.length) {
      yield* this.waitForSpace();
      done += this.write(src.subarray(done));
    }
  }

  /** Fills `dest`, waiting for the writer (who has started this frame and will finish it). */
  private *readExactly(dest: Uint8Array): Steps<void> {
    let got = this.read(dest, 0);
    while (got < dest.length) {
      yield* this.waitForData();
      got += this.read(dest, got);
    }
  }

  /** Reads one frame's body, whose first bytes have arrived. */
  *readFrame(): Steps<Uint8Array> {
    const whole = this.tryReadFrame();
    if (whole) return whole;
    const header = new Uint8Array(4);
    yield* this.readExactly(header);
    const body = new Uint8Array(new DataView(header.buffer).getUint32(0, true));
    yield* this.readExactly(body);
    return body;
  }

  /**
   * Decodes the next frame where it lies in the ring, if it has fully arrived (NO_FRAME if not):
   * no copy of the body first. Unless told `owned`, `decode` must copy whatever it keeps, for the
   * bytes are the writer's again as soon as it returns. A frame that wraps around the ring's end is
   * copied out (then `owned`).
   */
  tryDecodeFrame<R>(decode: (body: Uint8Array, owned: boolean) => R): R | typeof NO_FRAME {
    const length = this.peekLength();
    if (length === null || this.available() < 4 + length) return NO_FRAME;
    const head = Atomics.load(this.words, HEAD) >>> 0;
    const at = (head + 4) & this.mask;
    if (at + length > this.capacity) {
      // The body wraps: read it out whole.
      return decode(this.tryReadFrame()!, true);
    }
    try {
      return decode(this.data.subarray(at, at + length), false);
    } finally {
      this.release((head + 4 + length) | 0);
    }
  }

  /** A frame that has fully arrived, copied out, or null (never waits). */
  private tryReadFrame(): Uint8Array | null {
    const length = this.peekLength();
    if (length === null || this.available() < 4 + length) return null;
    const body = Buffer.allocUnsafe(length); // filled at once: no need to zero it first
    this.consume(body, 0, 4);
    return body;
  }
}
