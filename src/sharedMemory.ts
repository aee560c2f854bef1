/**
 * Python's `multiprocessing.shared_memory`: `SharedMemory` (a named POSIX shared memory segment,
 * attachable by name from any process, python3 included) and `ShareableList` (Python's exact binary
 * layout, so a list made here reads in python3 and the other way round).
 */
import { FileExistsError, FileNotFoundError, IndexError, PermissionError, ValueError } from './errors.js';
import { loadNative } from './native.js';
import { reduceSymbol, registerReducer, type Reduced } from './reduction.js';
import * as resourceTracker from './resourceTracker.js';
import { randomHex } from './util.js';

export { FileExistsError, FileNotFoundError, PermissionError };

export interface SharedMemoryOptions {
  /** The segment's name, without the leading slash; a random `psm_xxxxxxxx` when creating without one. */
  name?: string | null;
  /** Create a new segment (fails with `FileExistsError` if the name is taken). */
  create?: boolean;
  /** Bytes, when creating; ignored when attaching (the segment's own size is used). */
  size?: number;
  /** Register with the resource tracker, which unlinks the segment if the program never does. */
  track?: boolean;
}

const PREFIX = 'psm_';

/** A named shared memory segment, as Python's `SharedMemory`. */
export class SharedMemory {
  #name: string; // with the leading slash, as shm_open wants it
  #size: number;
  #buf: Uint8Array | null;
  #track: boolean;

  /** @internal A random name with its leading slash (Python's private `_make_filename`; a name that
   * is taken is retried with the next one). */
  static _makeFilename = (): string => `/${PREFIX}${randomHex(4)}`;

  constructor(options: SharedMemoryOptions | string = {}) {
    const { name = null, create = false, size = 0, track = true } = typeof options === 'string' ? { name: options } : options;
    if (typeof size !== 'number' || !(size >= 0) || !Number.isInteger(size)) throw new ValueError("'size' must be a positive integer");
    if (create && size === 0) throw new ValueError("'size' must be a positive number different from zero");
    if (name == null && !create) throw new ValueError("'name' can only be None if create=True");
    if (name != null && typeof name !== 'string') throw new TypeError(`'name' must be a string, not ${typeof name}`);
    if (name != null && name.includes('\0')) throw new ValueError('embedded null character');
    const native = loadNative();
    let mapping;
    let full: string;
    if (name == null) {
      for (;;) {
        full = SharedMemory._makeFilename();
        try {
          mapping = native.shmOpen(full, true, true, size);
          break;
        } catch (err) {
          if (!(err instanceof FileExistsError)) throw err;
        }
      }
    } else {
      full = `/${name}`;
      mapping = native.shmOpen(full, create, true, size);
    }
    this.#name = full;
    this.#size = mapping.size;
    this.#buf = new Uint8Array(mapping.buffer);
    this.#track = track;
    if (track) resourceTracker.register(full, 'shared_memory');
    else if (!create) keepTrackerAlive();
  }

  /** The mapping itself (a `SharedArrayBuffer` where the runtime supports it, else an external
   * `ArrayBuffer`). Throws `ValueError` after `close()`. */
  get buf(): Uint8Array {
    if (!this.#buf) throw new ValueError('operation on a closed SharedMemory');
    return this.#buf;
  }

  /** The name without the leading slash, as Python reports it. */
  get name(): string {
    return this.#name.startsWith('/') ? this.#name.slice(1) : this.#name;
  }

  get size(): number {
    return this.#size;
  }

  /** Releases this process's view; idempotent; the segment lives on. An external ArrayBuffer is
   * detached and unmapped at once (every view of it becomes empty); a SharedArrayBuffer is only
   * dropped and unmapped when the last reference to it is collected. */
  close(): void {
    if (!this.#buf) return;
    const buffer = this.#buf.buffer;
    this.#buf = null;
    loadNative().shmClose(buffer);
  }

  /** Destroys the segment (its name; mappings stay valid until closed). Call it once in all. */
  unlink(): void {
    loadNative().shmUnlink(this.#name);
    if (this.#track) resourceTracker.unregister(this.#name, 'shared_memory');
  }

  toString(): string {
    return `SharedMemory(${pyRepr(this.name)}, size=${this.#size})`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  /** Travels by name and re-attaches on the other side (without registering with the tracker). */
  [reduceSymbol](): Reduced {
    return { kind: 'SharedMemory', state: { name: this.name, size: this.#size } };
  }
}

registerReducer('SharedMemory', (state: { name: string }) => new SharedMemory({ name: state.name, track: false }));

/** An attacher that does not register still holds the tracker open while it runs (best effort). */
function keepTrackerAlive(): void {
  if (!resourceTracker.treeTrackerAddress()) return;
  try {
    resourceTracker.ensureRunning();
  } catch {
    // No tracker to keep: nothing to protect.
  }
}

// ---------------------------------------------------------------------------------------------
// ShareableList
// ---------------------------------------------------------------------------------------------

/** What a ShareableList slot can hold. Integers read back as numbers when they are safe integers,
 * as BigInt otherwise; bytes read back as a fresh Uint8Array. */
export type ShareableValue = number | bigint | boolean | string | Uint8Array | null;

const ALIGN = 8;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const FMT_BOOL = 'xxxxxxx?';
const FMT_NONE = 'xxxxxx?x';
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Python's recreation codes: 0 as-is, 1 str, 2 bytes, 3 None. */
function recreationCode(v: ShareableValue): number {
  if (typeof v === 'string') return 1;
  if (v instanceof Uint8Array) return 2;
  if (v === null || v === undefined) return 3;
  return 0;
}

function isInt64Number(v: number): boolean {
  return Number.isInteger(v) && v >= -(2 ** 63) && v < 2 ** 63;
}

/** The struct format of a non-string value. */
function scalarFormat(v: ShareableValue): string {
  if (v === null || v === undefined) return FMT_NONE;
  switch (typeof v) {
    case 'boolean':
      return FMT_BOOL;
    case 'bigint':
      if (v < INT64_MIN || v > INT64_MAX) throw new RangeError("'q' format requires -9223372036854775808 <= number <= 9223372036854775807");
      return 'q';
    case 'number':
      return isInt64Number(v) ? 'q' : 'd';
    default:
      throw new TypeError(`ShareableList items must be number, bigint, boolean, string, Uint8Array or null, not ${describe(v)}`);
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

function encodeItem(v: ShareableValue): Uint8Array | null {
  if (typeof v === 'string') return encoder.encode(v);
  if (v instanceof Uint8Array) return v;
  return null;
}

/**
 * The bytes a str/bytes slot holds: Python's `8 * (len(item) // 8 + 1)`, where a str's len counts
 * characters, so a list made here has Python's layout. A str whose UTF-8 is longer than that (which
 * Python truncates) gets room for its bytes instead.
 */
function capacity(item: string | Uint8Array, encoded: Uint8Array): number {
  const fits = (n: number): number => ALIGN * (Math.floor(n / ALIGN) + 1);
  const cap = fits(typeof item === 'string' ? [...item].length : encoded.length);
  return encoded.length <= cap ? cap : fits(encoded.length);
}

function stripNul(bytes: Uint8Array): Uint8Array {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  return bytes.slice(0, end);
}

/** A fixed-length list in one shared memory segment, with Python's `ShareableList` layout:
 * `q` length, `q`×(n+1) offsets, the data, `8s`×n formats, `b`×n recreation codes. */
export class ShareableList {
  /** The segment holding the list. */
  readonly shm: SharedMemory;
  #len: number;
  #offsets: number[]; // into the data area, n + 1 of them
  #view: DataView;

  constructor(sequence?: Iterable<ShareableValue> | null, options: { name?: string | null; track?: boolean } = {}) {
    const { name = null, track = true } = options;
    if (name == null || sequence != null) {
      const items = [...(sequence ?? [])];
      const encoded = items.map(encodeItem);
      const formats = items.map((v, i) => {
        const e = encoded[i];
        return e ? `${capacity(v as string | Uint8Array, e)}s` : scalarFormat(v);
      });
      const n = items.length;
      const offsets = [0];
      let offset = 0;
      for (const f of formats) {
        offset += f.endsWith('s') ? parseInt(f, 10) : ALIGN;
        offsets.push(offset);
      }
      const size = 8 + 8 * (n + 1) + offset + 8 * n + n;
      this.shm = new SharedMemory({ name, create: true, size, track });
      this.#len = n;
      this.#offsets = offsets;
      this.#view = new DataView(this.shm.buf.buffer, this.shm.buf.byteOffset, this.shm.buf.byteLength);
      this.#view.setBigInt64(0, BigInt(n), true);
      offsets.forEach((o, i) => this.#view.setBigInt64(8 + 8 * i, BigInt(o), true));
      items.forEach((v, i) => this.#write(i, formats[i]!, v, encoded[i] ?? null));
    } else {
      this.shm = new SharedMemory({ name, track });
      this.#view = new DataView(this.shm.buf.buffer, this.shm.buf.byteOffset, this.shm.buf.byteLength);
      this.#len = Number(this.#view.getBigInt64(0, true));
      this.#offsets = Array.from({ length: this.#len + 1 }, (_, i) => Number(this.#view.getBigInt64(8 + 8 * i, true)));
    }
  }

  get #dataStart(): number {
    return (this.#len + 2) * 8;
  }

  get #formatsStart(): number {
    return this.#dataStart + this.#offsets[this.#len]!;
  }

  get #codesStart(): number {
    return this.#formatsStart + this.#len * 8;
  }

  #position(i: number, message: string): number {
    if (typeof i !== 'number' || !Number.isInteger(i)) throw new TypeError('list indices must be integers');
    const p = i < 0 ? i + this.#len : i;
    if (p < 0 || p >= this.#len) throw new IndexError(message);
    return p;
  }

  #format(p: number): string {
    const raw = this.shm.buf.subarray(this.#formatsStart + p * 8, this.#formatsStart + p * 8 + 8);
    return new TextDecoder().decode(stripNul(raw));
  }

  #write(p: number, format: string, value: ShareableValue, encoded: Uint8Array | null): void {
    const buf = this.shm.buf;
    const at = this.#dataStart + this.#offsets[p]!;
    if (format.endsWith('s')) {
      const cap = parseInt(format, 10);
      buf.fill(0, at, at + cap);
      buf.set(encoded!, at);
    } else if (format === 'q') {
      this.#view.setBigInt64(at, BigInt(value as number | bigint), true);
    } else if (format === 'd') {
      this.#view.setFloat64(at, value as number, true);
    } else if (format === FMT_BOOL) {
      buf.fill(0, at, at + 8);
      buf[at + 7] = value ? 1 : 0;
    } else {
      buf.fill(0, at, at + 8);
    }
    const f = encoder.encode(format);
    buf.fill(0, this.#formatsStart + p * 8, this.#formatsStart + p * 8 + 8);
    buf.set(f, this.#formatsStart + p * 8);
    this.#view.setInt8(this.#codesStart + p, recreationCode(value));
  }

  /** The item at `i` (negative counts from the end); `IndexError` out of range. */
  get(i: number): ShareableValue {
    const p = this.#position(i, 'index out of range');
    const format = this.#format(p);
    const at = this.#dataStart + this.#offsets[p]!;
    const code = this.#view.getInt8(this.#codesStart + p);
    if (code === 3) return null;
    if (format.endsWith('s')) {
      const bytes = stripNul(this.shm.buf.subarray(at, at + parseInt(format, 10)));
      return code === 1 ? decoder.decode(bytes) : bytes;
    }
    if (format === 'q') {
      const v = this.#view.getBigInt64(at, true);
      return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    }
    if (format === 'd') return this.#view.getFloat64(at, true);
    if (format === FMT_BOOL) return this.shm.buf[at + 7] !== 0;
    if (format === FMT_NONE) return null;
    throw new ValueError(`unknown ShareableList format ${pyRepr(format)}`);
  }

  /** Replaces the item at `i`; a str/bytes value must fit the slot's storage (`ValueError`). */
  set(i: number, value: ShareableValue): void {
    const p = this.#position(i, 'assignment index out of range');
    const encoded = encodeItem(value);
    let format: string;
    if (!encoded) {
      format = scalarFormat(value);
    } else {
      const allocated = this.#offsets[p + 1]! - this.#offsets[p]!;
      if (encoded.length > allocated) throw new ValueError('bytes/str item exceeds available storage');
      const current = this.#format(p);
      format = current.endsWith('s') ? current : `${allocated}s`;
    }
    this.#write(p, format, value, encoded);
  }

  get length(): number {
    return Number(this.#view.getBigInt64(0, true));
  }

  /** The concatenated struct format of the items. */
  get format(): string {
    let out = '';
    for (let p = 0; p < this.#len; p++) out += this.#format(p);
    return out;
  }

  count(value: ShareableValue): number {
    let n = 0;
    for (const v of this) if (pyEquals(value, v)) n++;
    return n;
  }

  index(value: ShareableValue): number {
    let p = 0;
    for (const v of this) {
      if (pyEquals(value, v)) return p;
      p++;
    }
    throw new ValueError(`${pyRepr(value)} not in this container`);
  }

  *[Symbol.iterator](): IterableIterator<ShareableValue> {
    for (let p = 0; p < this.#len; p++) yield this.get(p);
  }

  toArray(): ShareableValue[] {
    return [...this];
  }

  toString(): string {
    return `ShareableList([${this.toArray().map(pyRepr).join(', ')}], name=${pyRepr(this.shm.name)})`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  /** Travels by name and re-attaches on the other side. */
  [reduceSymbol](): Reduced {
    return { kind: 'ShareableList', state: { name: this.shm.name } };
  }
}

registerReducer('ShareableList', (state: { name: string }) => new ShareableList(null, { name: state.name, track: false }));

/** Python's `==` for the values a ShareableList holds (`1 == 1.0 == True`, bytes by content). */
function pyEquals(a: ShareableValue, b: ShareableValue): boolean {
  const numeric = (x: unknown) => typeof x === 'number' || typeof x === 'bigint' || typeof x === 'boolean';
  if (numeric(a) && numeric(b)) return a == b; // loose equality compares number/bigint/boolean by value
  if (a instanceof Uint8Array && b instanceof Uint8Array) return a.length === b.length && a.every((x, i) => x === b[i]);
  return a === b || (a == null && b == null);
}

/** Python's `repr` of a ShareableList value. */
function pyRepr(v: ShareableValue | undefined): string {
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return 'nan';
    if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
    return String(v);
  }
  if (typeof v === 'string') {
    const quote = v.includes("'") && !v.includes('"') ? '"' : "'";
    const body = v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t');
    return quote + (quote === "'" ? body.replace(/'/g, "\\'") : body) + quote;
  }
  let s = '';
  const quote = v.includes(0x27) && !v.includes(0x22) ? '"' : "'";
  for (const b of v) {
    if (b === 0x5c) s += '\\\\';
    else if (b === 0x27 && quote === "'") s += "\\'";
    else if (b === 0x0a) s += '\\n';
    else if (b === 0x0d) s += '\\r';
    else if (b === 0x09) s += '\\t';
    else if (b >= 0x20 && b < 0x7f) s += String.fromCharCode(b);
    else s += '\\x' + b.toString(16).padStart(2, '0');
  }
  return `b${quote}${s}${quote}`;
}
