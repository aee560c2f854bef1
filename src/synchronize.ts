/**
 * Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event and Barrier, as CPython's
 * synchronize.py, built on 32-bit words in shared memory (heap.ts) and one waiting mechanism
 * (futex.ts).
 *
 * Every algorithm is written once, as a generator of futex.ts steps ("park on this word", "call
 * this function"): `runAsync` drives it without blocking the event loop, `runSync` for the `*Sync`
 * variants. Lock, RLock and Semaphore share one acquire (`SemLock`, as CPython's base class).
 *
 * Word layouts (Int32, all zero-initialised):
 * - Lock:      [state, ownerTid]. state = 0 unlocked, else (ownerPid << 1) | waitersBit.
 * - RLock:     [state, ownerTid, count].
 * - Semaphore: [value, waiters, maxvalue (-1 unbounded), robust, slots (pid, count) x 16].
 * - Condition: [seq, waiters, signals] plus its lock.
 * - Event:     [flag, waiters].
 * - Barrier:   [lock state, lock owner, state, count, seq].
 *
 * Beyond Python: the pid of whoever acquired a Lock/RLock is in the lock word, and a Semaphore keeps
 * (pid, units acquired and not yet released by that pid) slots, like SysV's SEM_UNDO. A waiter that
 * has waited a while checks whether that process still exists; if it died (SIGKILL, crash), the
 * waiter takes the lock over (or gives the units back) and emits a warning. See
 * docs/synchronization.md for the exact guarantees.
 */
import { threadId } from 'node:worker_threads';
import { BrokenBarrierError, ValueError } from './errors.js';
import { deadlineAfter, park, runAsync, runSync, secondsUntil, wake, type Steps } from './futex.js';
import { allocate, attachBlock, blockState, checkTarget, freeWith, int32s, type Block, type BlockState, type MemoryKind } from './heap.js';
import { reduceFunction, reduceSymbol, registerReducer, type ReduceContext, type Reduced } from './reduction.js';
import { processAlive } from './util.js';
import { memoryKindFor, registerClasses, type MemoryOptions } from './context.js';
import { currentProcess } from './process.js';

// ---- options ---------------------------------------------------------------------------------

/** The last parameter of every class here (Python's `ctx=`): the context whose memory the object
 * lives in (context.ts's `memoryKindFor`); the default context's when omitted. */
export type SyncOptions = MemoryOptions;

export interface AcquireOptions {
  /** Wait for the lock (default true). With false, `timeout` is ignored. */
  block?: boolean;
  /** Seconds; null/undefined waits forever, a negative value counts as 0. */
  timeout?: number | null;
  signal?: AbortSignal;
}

export interface WaitOptions {
  signal?: AbortSignal;
}

const now = (): number => performance.now();

// ---- identity and liveness ---------------------------------------------------------------------

const PID = process.pid;
/** This thread, as stored in owner words (0 means none). */
const TID = threadId + 1;
const ME = PID * 2;

/** How long a waiter waits before it first checks that the holder is alive, then how often. */
const ROBUST_FIRST_MS = 50;
const ROBUST_PERIOD_MS = 100;

function warnOwnerDied(what: string, pid: number, detail: string): void {
  process.emitWarning(
    `${what}: process ${pid} died while holding it; ${detail} (robust-lock recovery, see docs/synchronization.md)`,
    { type: 'OwnerDiedWarning', code: 'MP_OWNER_DIED' },
  );
}

function ownerName(pid: number, tid: number): string {
  if (pid === PID && tid === TID) {
    let name = 'MainProcess';
    try {
      name = currentProcess().name;
    } catch {
      // process.ts not usable (very early): keep Python's default name
    }
    return threadId === 0 ? name : `${name}|Thread-${threadId}`;
  }
  return pid === PID ? 'SomeOtherThread' : 'SomeOtherProcess';
}

/** `acquire`'s arguments, in either form: `({ block, timeout, signal })` or Python's `(block, timeout)`. */
export function normalizeAcquire(options?: AcquireOptions | boolean, timeout?: number | null): Required<Pick<AcquireOptions, 'block'>> & AcquireOptions {
  if (typeof options === 'boolean') return { block: options, timeout };
  return { block: options?.block ?? true, timeout: options?.timeout, signal: options?.signal };
}

// ---- base --------------------------------------------------------------------------------------

/** When set, the next constructor call attaches to this block instead of allocating. */
let attaching: Block | null = null;

function attachAs<T>(make: () => T, block: Block): T {
  attaching = block;
  try {
    return make();
  } finally {
    attaching = null;
  }
}

function takeBlock(owner: object, kind: MemoryKind, bytes: number): { block: Block; fresh: boolean } {
  if (attaching !== null) {
    const block = attaching;
    attaching = null;
    return { block, fresh: false };
  }
  const block = allocate(kind, bytes, 8);
  freeWith(owner, block);
  return { block, fresh: true };
}

const inspect = Symbol.for('nodejs.util.inspect.custom');

/** An object that is only its block in shared memory (Lock, RLock, Semaphore, Event). */
interface BlockObject {
  readonly _block: Block;
}

/** The kind each block-only class travels under, set by `registerBlockKind`. */
const blockKinds = new Map<unknown, string>();

/** Makes instances of `cls` (and of its subclasses) travel as `kind`: the receiving process
 * attaches a new instance to the same block. Called once per class, next to it. */
function registerBlockKind(kind: string, cls: new () => BlockObject): void {
  blockKinds.set(cls, kind);
  registerReducer(kind, (state: BlockState) => attachAs(() => new cls(), attachBlock(state)));
}

/** What a block-only object reduces to: the kind of its nearest registered class, and its block. */
function reduceBlock(object: BlockObject, ctx: ReduceContext): Reduced {
  let cls: unknown = object.constructor;
  while (cls !== null && !blockKinds.has(cls)) cls = Object.getPrototypeOf(cls);
  const kind = blockKinds.get(cls)!; // every exported block class registers itself below
  checkTarget(object._block, ctx.target, kind);
  return { kind, state: blockState(object._block) };
}

/** Acquires `lock`, runs `fn` (sync or async), releases; returns `fn`'s result. The body of every
 * `with` here and in sharedctypes.ts. */
export async function withLock<T>(
  lock: { acquire(options?: AcquireOptions): Promise<boolean>; release(): unknown },
  fn: () => T | Promise<T>,
  options: Pick<AcquireOptions, 'signal'> = {},
): Promise<T> {
  await lock.acquire(options);
  try {
    return await fn();
  } finally {
    await lock.release(); // a manager's lock proxy releases asynchronously
  }
}

/** What Lock, RLock, Semaphore, Condition and sharedctypes' Synchronized wrappers share: `with`
 * and the disposers, in terms of `acquire` and `release` (not exported by index.ts). */
abstract class LockLike {
  abstract acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean>;
  abstract acquireSync(options?: AcquireOptions | boolean, timeout?: number | null): boolean;
  abstract release(): void;

  /** Acquires (abortable with `signal`), runs `fn` (sync or async), releases; returns `fn`'s result. */
  with<T>(fn: () => T | Promise<T>, options: Pick<AcquireOptions, 'signal'> = {}): Promise<T> {
    return withLock(this, fn, options);
  }
  /** Python's `__exit__`: releases. */
  [Symbol.dispose](): void {
    this.release();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.release();
  }
}

/** What a LockWrapper needs of its lock. */
export type Acquirable = Pick<LockLike, 'acquire' | 'acquireSync' | 'release'>;

/** A lock-like object around a lock of its own (Python's Condition, sharedctypes' synchronized
 * wrappers): acquiring and releasing it acquire and release that lock. */
export abstract class LockWrapper extends LockLike {
  /** The lock that `acquire` and `release` act on. */
  protected abstract get wrappedLock(): Acquirable;
  acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean> {
    return this.wrappedLock.acquire(options, timeout);
  }
  acquireSync(options?: AcquireOptions | boolean, timeout?: number | null): boolean {
    return this.wrappedLock.acquireSync(options, timeout);
  }
  release(): void {
    this.wrappedLock.release();
  }
}

/** What Condition needs from its lock. */
interface OwnedLock {
  /** @internal */ readonly _block: Block;
  /** @internal */ _isMine(): boolean;
  /** @internal Releases completely (every RLock level); returns what `_restore` needs. */
  _releaseSave(): number;
  /** @internal */ _restore(saved: number): void;
  /** @internal */ _acquireSteps(block: boolean, timeout: number | null | undefined): Steps<boolean>;
  /** @internal Takes the lock back after a Condition wait and restores `saved` (never re-enters: another
   * async task of this thread that holds an RLock meanwhile is waited for, not joined). */
  _reacquireSteps(saved: number): Steps<void>;
  acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean>;
  acquireSync(options?: AcquireOptions | boolean, timeout?: number | null): boolean;
  release(): void;
  toString(): string;
}

/**
 * When a robust wait looks whether the holder died (first after ROBUST_FIRST_MS, then every
 * ROBUST_PERIOD_MS: a dead holder never wakes anyone), and so how long it may park meanwhile.
 */
class HolderCheck {
  private next = now() + ROBUST_FIRST_MS;

  constructor(
    private readonly robust: boolean,
    private readonly deadline: number,
  ) {}

  /** Whether it is time (at `t`) to look at the holder; schedules the next look. */
  due(t: number): boolean {
    if (!this.robust || t < this.next) return false;
    this.next = t + ROBUST_PERIOD_MS;
    return true;
  }

  /** Until when to park: the deadline, or the next look if that comes first. */
  parkUntil(): number {
    return this.robust ? Math.min(this.deadline, this.next) : this.deadline;
  }
}

// ---- the mutex word ----------------------------------------------------------------------------

function tryLockWord(w: Int32Array): boolean {
  if (Atomics.compareExchange(w, 0, 0, ME) === 0) {
    Atomics.store(w, 1, TID);
    return true;
  }
  return false;
}

/** A 3-state futex mutex (unlocked / locked / locked with waiters) with the owner's pid in the word. */
function* lockWordSteps(w: Int32Array, timeout: number | null | undefined, robust: boolean, what: string): Steps<boolean> {
  const deadline = deadlineAfter(timeout);
  const holderCheck = new HolderCheck(robust, deadline);
  for (;;) {
    let v = Atomics.load(w, 0);
    if (v === 0) {
      // Having contended, assume others wait too: release will wake one.
      if (Atomics.compareExchange(w, 0, 0, ME | 1) === 0) {
        Atomics.store(w, 1, TID);
        return true;
      }
      continue;
    }
    if ((v & 1) === 0) {
      if (Atomics.compareExchange(w, 0, v, v | 1) !== v) continue;
      v |= 1;
    }
    const t = now();
    if (t >= deadline) return false;
    const owner = v >>> 1;
    if (holderCheck.due(t) && owner !== PID && !processAlive(owner)) {
      if (Atomics.compareExchange(w, 0, v, ME | 1) === v) {
        Atomics.store(w, 1, TID);
        warnOwnerDied(what, owner, 'the lock was taken over');
        return true;
      }
      continue;
    }
    yield park(w, 0, v, holderCheck.parkUntil());
  }
}

function unlockWord(w: Int32Array): void {
  Atomics.store(w, 1, 0);
  const v = Atomics.exchange(w, 0, 0);
  if (v & 1) wake(w, 0, 1);
}

const RELEASED_TOO_MANY = 'semaphore or lock released too many times';

// ---- SemLock -----------------------------------------------------------------------------------

/**
 * What Lock, RLock and Semaphore share, as CPython's `SemLock`: their words in shared memory, and
 * one `acquire` (both forms) around each one's `_tryAcquire` (the uncontended path, no step) and
 * `_contend` (the wait, as steps).
 */
abstract class SemLock extends LockLike {
  /** @internal */ readonly _block: Block;
  /** @internal */ protected readonly _w: Int32Array;
  /** Whether the words were just allocated (not attached to an existing object's). */
  protected readonly _fresh: boolean;

  constructor(options: SyncOptions | undefined, words: number) {
    super();
    const { block, fresh } = takeBlock(this, memoryKindFor(options), words * 4);
    this._block = block;
    this._w = int32s(block, 0, words);
    this._fresh = fresh;
  }

  /** Acquires; resolves true, or false when `block` is false or `timeout` seconds passed. Python's
   * positional form `(block, timeout)` works too. */
  acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean> {
    const o = normalizeAcquire(options, timeout);
    if (o.signal?.aborted) return Promise.reject(o.signal.reason);
    if (this._tryAcquire()) return Promise.resolve(true);
    if (!o.block) return Promise.resolve(false);
    return runAsync(this._acquireSteps(true, o.timeout), o.signal);
  }

  /** `acquire`, blocking this thread. */
  acquireSync(options?: AcquireOptions | boolean, timeout?: number | null): boolean {
    const o = normalizeAcquire(options, timeout);
    if (this._tryAcquire()) return true;
    if (!o.block) return false;
    return runSync(this._acquireSteps(true, o.timeout));
  }

  /** @internal */
  *_acquireSteps(block: boolean, timeout: number | null | undefined): Steps<boolean> {
    if (this._tryAcquire()) return true;
    if (!block) return false;
    return yield* this._contend(timeout);
  }

  /** Takes it at once if free; false otherwise. */
  protected abstract _tryAcquire(): boolean;
  /** Waits for it (the holder may die: robust locks take over) until `timeout` seconds. */
  protected abstract _contend(timeout: number | null | undefined): Steps<boolean>;

  [inspect](): string {
    return this.toString();
  }

  [reduceSymbol](ctx: ReduceContext): Reduced {
    return reduceBlock(this, ctx);
  }
}

// ---- Lock --------------------------------------------------------------------------------------

/** A non-recursive lock. Any process or thread may release it. */
export class Lock extends SemLock implements OwnedLock {
  constructor(options?: SyncOptions) {
    super(options, 2);
  }

  /** Releases the lock; `ValueError` if it is not locked. */
  release(): void {
    if (Atomics.load(this._w, 0) === 0) throw new ValueError(RELEASED_TOO_MANY);
    unlockWord(this._w);
  }

  protected _tryAcquire(): boolean {
    return tryLockWord(this._w);
  }
  protected *_contend(timeout: number | null | undefined): Steps<boolean> {
    return yield* lockWordSteps(this._w, timeout, this._block.kind === 'process', this.constructor.name);
  }
  /** @internal */
  _isMine(): boolean {
    return Atomics.load(this._w, 0) >>> 1 === PID && Atomics.load(this._w, 1) === TID;
  }
  /** @internal */
  _releaseSave(): number {
    this.release();
    return 1;
  }
  /** @internal */
  _restore(_saved: number): void {}
  /** @internal */
  *_reacquireSteps(_saved: number): Steps<void> {
    yield* this._acquireSteps(true, null);
  }

  override toString(): string {
    const v = Atomics.load(this._w, 0);
    const owner = v === 0 ? 'None' : ownerName(v >>> 1, Atomics.load(this._w, 1));
    return `<Lock(owner=${owner})>`;
  }

}
registerBlockKind('Lock', Lock);

/**
 * Acquires `lock` without blocking the event loop, and calls `onTaken` in the very step that takes
 * it, before any other code runs. A queue's feeder records so that it holds its writer lock: a
 * blocking call of the same thread that runs before the Promise settles then knows who holds it.
 * A `daemon` acquire does not keep the event loop alive (futex.ts `wait`).
 */
export function acquireMarking(lock: Lock, onTaken: () => void, signal?: AbortSignal, daemon = false): Promise<boolean> {
  function* steps(): Steps<boolean> {
    const taken = yield* lock._acquireSteps(true, null);
    if (taken) onTaken();
    return taken;
  }
  return runAsync(steps(), signal, daemon);
}

// ---- RLock -------------------------------------------------------------------------------------

/** A recursive lock owned by one (process, thread) pair; async code on one thread shares it. */
export class RLock extends SemLock implements OwnedLock {
  constructor(options?: SyncOptions) {
    super(options, 3);
  }

  /** Releases one level; `ValueError` if this process and thread do not own it. */
  release(): void {
    if (!this._isMine() || Atomics.load(this._w, 2) <= 0) {
      throw new ValueError('attempt to release recursive lock not owned by thread');
    }
    if (Atomics.sub(this._w, 2, 1) === 1) unlockWord(this._w);
  }

  protected _tryAcquire(): boolean {
    if (this._isMine()) {
      Atomics.add(this._w, 2, 1);
      return true;
    }
    if (tryLockWord(this._w)) {
      Atomics.store(this._w, 2, 1);
      return true;
    }
    return false;
  }
  protected *_contend(timeout: number | null | undefined): Steps<boolean> {
    const ok = yield* lockWordSteps(this._w, timeout, this._block.kind === 'process', 'RLock');
    if (ok) Atomics.store(this._w, 2, 1);
    return ok;
  }
  /** @internal */
  _isMine(): boolean {
    return Atomics.load(this._w, 0) >>> 1 === PID && Atomics.load(this._w, 1) === TID;
  }
  /** @internal */
  _releaseSave(): number {
    if (!this._isMine()) throw new ValueError('attempt to release recursive lock not owned by thread');
    const count = Atomics.exchange(this._w, 2, 0);
    unlockWord(this._w);
    return count;
  }
  /** @internal */
  _restore(saved: number): void {
    Atomics.store(this._w, 2, saved);
  }
  /** @internal */
  *_reacquireSteps(saved: number): Steps<void> {
    if (!tryLockWord(this._w)) yield* lockWordSteps(this._w, null, this._block.kind === 'process', 'RLock');
    Atomics.store(this._w, 2, saved);
  }

  override toString(): string {
    const v = Atomics.load(this._w, 0);
    if (v === 0) return '<RLock(None, 0)>';
    if (this._isMine()) return `<RLock(${ownerName(PID, TID)}, ${Atomics.load(this._w, 2)})>`;
    return `<RLock(${ownerName(v >>> 1, Atomics.load(this._w, 1))}, nonzero)>`;
  }

}
registerBlockKind('RLock', RLock);

// ---- Semaphore ---------------------------------------------------------------------------------

const S_VALUE = 0;
const S_WAITERS = 1;
const S_MAX = 2;
const S_ROBUST = 3;
const S_SLOTS = 4;
const N_SLOTS = 16;
const SEM_WORDS = S_SLOTS + 2 * N_SLOTS;
const SEM_VALUE_MAX = 0x7fffffff;

export interface SemaphoreOptions extends SyncOptions {
  /** Give back the units held by a process that died (SEM_UNDO-like; default true for process
   * memory). Turn it off for a semaphore used to signal between processes (acquired in one process,
   * released in another), where units taken by a dead process were consumed, not held. */
  robust?: boolean;
}

/** A counting semaphore. */
export class Semaphore extends SemLock {
  private _slot = -1;

  constructor(value = 1, options?: SemaphoreOptions) {
    super(options, SEM_WORDS);
    if (this._fresh) {
      if (!Number.isInteger(value) || value < 0) {
        throw new ValueError('semaphore initial value must be >= 0');
      }
      if (value > SEM_VALUE_MAX) throw new ValueError('semaphore initial value is too large');
      Atomics.store(this._w, S_VALUE, value);
      Atomics.store(this._w, S_MAX, -1);
      Atomics.store(this._w, S_ROBUST, (options?.robust ?? true) && this._block.kind === 'process' ? 1 : 0);
    }
  }

  release(): void {
    const w = this._w;
    const max = Atomics.load(w, S_MAX);
    const limit = max < 0 ? SEM_VALUE_MAX : max;
    for (;;) {
      const v = Atomics.load(w, S_VALUE);
      if (v >= limit) throw new ValueError(RELEASED_TOO_MANY);
      if (Atomics.compareExchange(w, S_VALUE, v, v + 1) === v) break;
    }
    this._noteRelease();
    if (Atomics.load(w, S_WAITERS) > 0) wake(w, S_VALUE, 1);
  }

  getValue(): number {
    return Atomics.load(this._w, S_VALUE);
  }

  override toString(): string {
    return `<Semaphore(value=${this.getValue()})>`;
  }

  protected _tryAcquire(): boolean {
    const w = this._w;
    for (;;) {
      const v = Atomics.load(w, S_VALUE);
      if (v <= 0) return false;
      if (Atomics.compareExchange(w, S_VALUE, v, v - 1) === v) {
        this._noteAcquire();
        return true;
      }
    }
  }

  protected *_contend(timeout: number | null | undefined): Steps<boolean> {
    const w = this._w;
    const robust = Atomics.load(w, S_ROBUST) === 1;
    const deadline = deadlineAfter(timeout);
    const holderCheck = new HolderCheck(robust, deadline);
    for (;;) {
      if (this._tryAcquire()) return true;
      const t = now();
      if (t >= deadline) return false;
      if (holderCheck.due(t) && this._recoverDead()) continue;
      Atomics.add(w, S_WAITERS, 1);
      try {
        yield park(w, S_VALUE, 0, holderCheck.parkUntil());
      } finally {
        Atomics.sub(w, S_WAITERS, 1);
      }
    }
  }

  private _mySlot(claim: boolean): number {
    const w = this._w;
    if (this._slot >= 0 && Atomics.load(w, S_SLOTS + 2 * this._slot) === PID) return this._slot;
    for (let i = 0; i < N_SLOTS; i++) {
      if (Atomics.load(w, S_SLOTS + 2 * i) === PID) return (this._slot = i);
    }
    if (!claim) return -1;
    for (let i = 0; i < N_SLOTS; i++) {
      if (Atomics.compareExchange(w, S_SLOTS + 2 * i, 0, PID) === 0) return (this._slot = i);
    }
    return -1; // table full: this process's units are not recoverable
  }

  private _noteAcquire(): void {
    if (Atomics.load(this._w, S_ROBUST) !== 1) return;
    const slot = this._mySlot(true);
    if (slot >= 0) Atomics.add(this._w, S_SLOTS + 2 * slot + 1, 1);
  }

  private _noteRelease(): void {
    if (Atomics.load(this._w, S_ROBUST) !== 1) return;
    const slot = this._mySlot(false);
    if (slot < 0) return;
    const w = this._w;
    const countIndex = S_SLOTS + 2 * slot + 1;
    for (;;) {
      const c = Atomics.load(w, countIndex);
      if (c <= 0) return;
      if (Atomics.compareExchange(w, countIndex, c, c - 1) === c) {
        if (c === 1) Atomics.compareExchange(w, S_SLOTS + 2 * slot, PID, 0);
        return;
      }
    }
  }

  /** Gives back the units of processes that died holding them; true if any came back. */
  private _recoverDead(): boolean {
    const w = this._w;
    let recovered = false;
    for (let i = 0; i < N_SLOTS; i++) {
      const pidIndex = S_SLOTS + 2 * i;
      const pid = Atomics.load(w, pidIndex);
      if (pid <= 0 || pid === PID || Atomics.load(w, pidIndex + 1) <= 0 || processAlive(pid)) continue;
      if (Atomics.compareExchange(w, pidIndex, pid, -1) !== pid) continue;
      const units = Atomics.exchange(w, pidIndex + 1, 0);
      Atomics.store(w, pidIndex, 0);
      if (units <= 0) continue;
      const max = Atomics.load(w, S_MAX);
      const limit = max < 0 ? SEM_VALUE_MAX : max;
      let given = 0;
      for (;;) {
        const v = Atomics.load(w, S_VALUE);
        given = Math.min(units, limit - v);
        if (given <= 0 || Atomics.compareExchange(w, S_VALUE, v, v + given) === v) break;
      }
      if (given > 0) {
        recovered = true;
        warnOwnerDied(this.constructor.name, pid, `${given} unit(s) it held were given back`);
        wake(w, S_VALUE, given);
      }
    }
    return recovered;
  }
}
registerBlockKind('Semaphore', Semaphore);

/** A semaphore that cannot be released above its initial value. */
export class BoundedSemaphore extends Semaphore {
  constructor(value = 1, options?: SemaphoreOptions) {
    super(value, options);
    if (this._fresh) Atomics.store(this._w, S_MAX, value);
  }

  override toString(): string {
    return `<BoundedSemaphore(value=${this.getValue()}, maxvalue=${Atomics.load(this._w, S_MAX)})>`;
  }
}
registerBlockKind('BoundedSemaphore', BoundedSemaphore);

// ---- Condition ---------------------------------------------------------------------------------

const C_SEQ = 0;
const C_WAITERS = 1;
const C_SIGNALS = 2;

function takeSignal(w: Int32Array): boolean {
  for (;;) {
    const s = Atomics.load(w, C_SIGNALS);
    if (s <= 0) return false;
    if (Atomics.compareExchange(w, C_SIGNALS, s, s - 1) === s) return true;
  }
}

/** Leaves the waiter set: takes a pending signal if this waiter may (a notify happened since it
 * entered), else stops being counted as waiting. Returns whether a signal was taken.
 *
 * Invariant: pending signals <= waiters that entered before the last notify and are still inside,
 * so a waiter that entered after a notify never steals the signal meant for an earlier one, and
 * every pending signal has an eligible taker. */
function leaveWaiters(w: Int32Array, entrySeq: number): boolean {
  for (;;) {
    if (Atomics.load(w, C_SEQ) !== entrySeq && takeSignal(w)) return true;
    const n = Atomics.load(w, C_WAITERS);
    if (n > 0 && Atomics.compareExchange(w, C_WAITERS, n, n - 1) === n) return false;
  }
}

/** A condition variable over a Lock or RLock (a new RLock by default). */
export class Condition extends LockWrapper {
  /** @internal */ readonly _block: Block;
  private readonly _w: Int32Array;
  private readonly _lock: OwnedLock;

  constructor(lock?: Lock | RLock | null, options?: SyncOptions) {
    super();
    const kind = lock ? lock._block.kind : memoryKindFor(options);
    const { block } = takeBlock(this, kind, 12);
    this._block = block;
    this._w = int32s(block, 0, 3);
    this._lock = lock ?? new RLock(options);
    if (this._lock._block.kind !== block.kind) {
      throw new ValueError('a Condition and its lock must come from the same context');
    }
  }

  protected get wrappedLock(): Acquirable {
    return this._lock;
  }

  /** Releases the lock (every level of an RLock), waits for a notify or `timeout` seconds, takes
   * the lock back; resolves true if notified, false on timeout. */
  wait(timeout?: number | null, options?: WaitOptions): Promise<boolean> {
    if (options?.signal?.aborted) return Promise.reject(options.signal.reason);
    return runAsync(this._waitSteps(timeout), options?.signal);
  }

  waitSync(timeout?: number | null): boolean {
    return runSync(this._waitSteps(timeout));
  }

  /** Waits until `predicate()` is truthy (checked first, then after each wake); returns its last
   * value, falsy on timeout. */
  async waitFor<T>(predicate: () => T | Promise<T>, timeout?: number | null, options?: WaitOptions): Promise<T> {
    let result = await predicate();
    const deadline = deadlineAfter(timeout);
    while (!result) {
      const left = secondsUntil(deadline);
      if (left !== null && left <= 0) break;
      await this.wait(left, options);
      result = await predicate();
    }
    return result;
  }

  /** `waitFor`, blocking this thread (the predicate must be synchronous). */
  waitForSync<T>(predicate: () => T, timeout?: number | null): T {
    let result = predicate();
    const deadline = deadlineAfter(timeout);
    while (!result) {
      const left = secondsUntil(deadline);
      if (left !== null && left <= 0) break;
      this.waitSync(left);
      result = predicate();
    }
    return result;
  }

  /** Wakes up to `n` waiters; `ValueError` unless the lock is owned. */
  notify(n = 1): void {
    if (!this._lock._isMine()) throw new ValueError('lock is not owned');
    const w = this._w;
    for (;;) {
      const waiting = Atomics.load(w, C_WAITERS);
      const k = Math.min(n, waiting);
      if (k <= 0) return;
      if (Atomics.compareExchange(w, C_WAITERS, waiting, waiting - k) === waiting) {
        Atomics.add(w, C_SIGNALS, k);
        Atomics.add(w, C_SEQ, 1);
        wake(w, C_SEQ, k);
        return;
      }
    }
  }

  notifyAll(): void {
    this.notify(SEM_VALUE_MAX);
  }

  /** @internal */
  *_waitSteps(timeout: number | null | undefined): Steps<boolean> {
    if (!this._lock._isMine()) throw new ValueError('must acquire() condition before using wait()');
    const w = this._w;
    const lock = this._lock;
    // Entering and notifying both happen under the lock: a waiter may take a signal only once the
    // sequence number has moved since it entered.
    Atomics.add(w, C_WAITERS, 1);
    const entrySeq = Atomics.load(w, C_SEQ);
    const saved = lock._releaseSave();
    const deadline = deadlineAfter(timeout);
    let notified = false;
    try {
      for (;;) {
        const seq = Atomics.load(w, C_SEQ);
        if (seq !== entrySeq && takeSignal(w)) {
          notified = true;
          break;
        }
        if (now() >= deadline) {
          notified = leaveWaiters(w, entrySeq);
          break;
        }
        yield park(w, C_SEQ, seq, deadline);
      }
    } catch (error) {
      leaveWaiters(w, entrySeq);
      yield* lock._reacquireSteps(saved);
      throw error;
    }
    yield* lock._reacquireSteps(saved);
    return notified;
  }

  override toString(): string {
    return `<Condition(${this._lock.toString()}, ${Atomics.load(this._w, C_WAITERS)})>`;
  }
  [inspect](): string {
    return this.toString();
  }

  [reduceSymbol](ctx: ReduceContext): Reduced {
    checkTarget(this._block, ctx.target, 'Condition');
    const lock = (this._lock as Lock | RLock)[reduceSymbol](ctx);
    return { kind: 'Condition', state: { block: blockState(this._block), lock } };
  }
}
registerReducer('Condition', (state: { block: BlockState; lock: { kind: string; state: BlockState } }) => {
  const lockBlock = attachBlock(state.lock.state);
  const lock = state.lock.kind === 'Lock' ? attachAs(() => new Lock(), lockBlock) : attachAs(() => new RLock(), lockBlock);
  return attachAs(() => new Condition(lock), attachBlock(state.block));
});

// ---- Event -------------------------------------------------------------------------------------

const E_FLAG = 0;
const E_WAITERS = 1;

/** A flag that processes and threads can wait for. */
export class Event {
  /** @internal */ readonly _block: Block;
  private readonly _w: Int32Array;

  constructor(options?: SyncOptions) {
    const { block } = takeBlock(this, memoryKindFor(options), 8);
    this._block = block;
    this._w = int32s(block, 0, 2);
  }

  isSet(): boolean {
    return Atomics.load(this._w, E_FLAG) === 1;
  }

  /** Sets the flag and wakes every waiter. */
  set(): void {
    Atomics.store(this._w, E_FLAG, 1);
    if (Atomics.load(this._w, E_WAITERS) > 0) wake(this._w, E_FLAG);
  }

  clear(): void {
    Atomics.store(this._w, E_FLAG, 0);
  }

  /** Resolves the flag: true once set, false after `timeout` seconds unset. */
  wait(timeout?: number | null, options?: WaitOptions): Promise<boolean> {
    if (options?.signal?.aborted) return Promise.reject(options.signal.reason);
    if (this.isSet()) return Promise.resolve(true);
    return runAsync(this._waitSteps(timeout), options?.signal);
  }

  waitSync(timeout?: number | null): boolean {
    if (this.isSet()) return true;
    return runSync(this._waitSteps(timeout));
  }

  private *_waitSteps(timeout: number | null | undefined): Steps<boolean> {
    const w = this._w;
    const deadline = deadlineAfter(timeout);
    for (;;) {
      if (Atomics.load(w, E_FLAG) === 1) return true;
      if (now() >= deadline) return false;
      Atomics.add(w, E_WAITERS, 1);
      try {
        yield park(w, E_FLAG, 0, deadline);
      } finally {
        Atomics.sub(w, E_WAITERS, 1);
      }
    }
  }

  toString(): string {
    const where = this._block.segment ? `${this._block.segment}+0x${this._block.offset.toString(16)}` : `0x${this._block.offset.toString(16)}`;
    return `<Event at ${where} ${this.isSet() ? 'set' : 'unset'}>`;
  }
  [inspect](): string {
    return this.toString();
  }

  [reduceSymbol](ctx: ReduceContext): Reduced {
    return reduceBlock(this, ctx);
  }
}
registerBlockKind('Event', Event);

// ---- Barrier -----------------------------------------------------------------------------------

const B_STATE = 2;
const B_COUNT = 3;
const B_SEQ = 4;
/** The barrier's state word (CPython's threading.Barrier states; negative = not usable now). */
const Phase = {
  filling: 0,
  draining: 1,
  action: 2, // the last party is running the action (outside the internal lock)
  resetting: -1,
  broken: -2,
} as const;

/** A barrier for `parties` processes or threads (threading.Barrier's state machine in shared memory). */
export class Barrier {
  /** @internal */ readonly _block: Block;
  private readonly _w: Int32Array;
  private readonly _lockWords: Int32Array;
  private readonly _parties: number;
  private readonly _action: (() => unknown) | null;
  private readonly _timeout: number | null;

  constructor(parties: number, action?: (() => unknown) | null, timeout?: number | null, options?: SyncOptions) {
    const { block } = takeBlock(this, memoryKindFor(options), 20);
    this._block = block;
    this._w = int32s(block, 0, 5);
    this._lockWords = int32s(block, 0, 2);
    this._parties = parties;
    this._action = action ?? null;
    this._timeout = timeout ?? null;
  }

  get parties(): number {
    return this._parties;
  }
  /** The number of parties waiting (0 while draining or resetting). */
  get nWaiting(): number {
    return Atomics.load(this._w, B_STATE) === Phase.filling ? Atomics.load(this._w, B_COUNT) : 0;
  }
  get broken(): boolean {
    return Atomics.load(this._w, B_STATE) === Phase.broken;
  }

  /** Waits for every party; resolves this party's arrival index (0..parties-1).
   * `BrokenBarrierError` on abort, reset or timeout (which breaks the barrier). */
  wait(timeout?: number | null, options?: WaitOptions): Promise<number> {
    if (options?.signal?.aborted) return Promise.reject(options.signal.reason);
    return runAsync(this._waitSteps(timeout), options?.signal);
  }

  waitSync(timeout?: number | null): number {
    return runSync(this._waitSteps(timeout));
  }

  /** Breaks the barrier: current and future waiters get BrokenBarrierError until `reset()`. */
  abort(): void {
    this._lockSync();
    try {
      this._break();
    } finally {
      unlockWord(this._lockWords);
    }
  }

  /** Back to the initial state; current waiters get BrokenBarrierError. */
  reset(): void {
    const w = this._w;
    this._lockSync();
    try {
      if (Atomics.load(w, B_COUNT) > 0) {
        const state = Atomics.load(w, B_STATE);
        if (state === Phase.filling || state === Phase.broken) Atomics.store(w, B_STATE, Phase.resetting);
      } else {
        Atomics.store(w, B_STATE, Phase.filling);
      }
      this._notifyAll();
    } finally {
      unlockWord(this._lockWords);
    }
  }

  private _lockSync(): void {
    // The internal lock is only ever held for a few loads and stores (never across user code or a
    // wait), so blocking for it is brief.
    if (!tryLockWord(this._lockWords)) runSync(lockWordSteps(this._lockWords, null, this._block.kind === 'process', 'Barrier'));
  }

  private *_lockSteps(): Steps<void> {
    if (!tryLockWord(this._lockWords)) yield* lockWordSteps(this._lockWords, null, this._block.kind === 'process', 'Barrier');
  }

  private _notifyAll(): void {
    Atomics.add(this._w, B_SEQ, 1);
    wake(this._w, B_SEQ);
  }

  private _break(): void {
    Atomics.store(this._w, B_STATE, Phase.broken);
    this._notifyAll();
  }

  /** Releases the internal lock, waits for a notify (or `deadline`), takes the lock back. */
  private *_sleep(deadline: number): Steps<void> {
    const seq = Atomics.load(this._w, B_SEQ);
    unlockWord(this._lockWords);
    try {
      yield park(this._w, B_SEQ, seq, deadline);
    } finally {
      yield* this._lockSteps();
    }
  }

  private *_waitSteps(timeout: number | null | undefined): Steps<number> {
    const w = this._w;
    const deadline = deadlineAfter(timeout ?? this._timeout);
    yield* this._lockSteps();
    try {
      // enter: wait out a previous cycle's draining or a reset
      for (;;) {
        const state = Atomics.load(w, B_STATE);
        if (state !== Phase.draining && state !== Phase.resetting && state !== Phase.action) break;
        yield* this._sleep(Infinity);
      }
      if (Atomics.load(w, B_STATE) < 0) throw new BrokenBarrierError();
      const index = Atomics.add(w, B_COUNT, 1);
      try {
        if (index + 1 >= this._parties) {
          if (this._action) {
            Atomics.store(w, B_STATE, Phase.action);
            unlockWord(this._lockWords);
            let failure: { error: unknown } | null = null;
            try {
              yield { call: this._action };
            } catch (error) {
              failure = { error };
            }
            yield* this._lockSteps();
            if (failure) {
              this._break();
              throw failure.error;
            }
            if (Atomics.load(w, B_STATE) !== Phase.action) throw new BrokenBarrierError();
          }
          Atomics.store(w, B_STATE, Phase.draining);
          this._notifyAll();
        } else {
          for (;;) {
            const state = Atomics.load(w, B_STATE);
            if (state !== Phase.filling && state !== Phase.action) break;
            // As in Python, a timeout cannot break the barrier while the action runs.
            if (state === Phase.filling && now() >= deadline) {
              this._break();
              throw new BrokenBarrierError();
            }
            yield* this._sleep(state === Phase.action ? Infinity : deadline);
          }
          if (Atomics.load(w, B_STATE) < 0) throw new BrokenBarrierError();
        }
        return index;
      } finally {
        // exit: the last one out of a drain or reset refills the barrier
        const left = Atomics.sub(w, B_COUNT, 1) - 1;
        const state = Atomics.load(w, B_STATE);
        if (left === 0 && (state === Phase.resetting || state === Phase.draining)) {
          Atomics.store(w, B_STATE, Phase.filling);
          this._notifyAll();
        }
      }
    } finally {
      unlockWord(this._lockWords);
    }
  }

  toString(): string {
    if (this.broken) return `<Barrier(parties=${this._parties}, broken)>`;
    return `<Barrier(parties=${this._parties}, waiters=${this.nWaiting}/${this._parties})>`;
  }
  [inspect](): string {
    return this.toString();
  }

  [reduceSymbol](ctx: ReduceContext): Reduced {
    checkTarget(this._block, ctx.target, 'Barrier');
    return {
      kind: 'Barrier',
      state: {
        block: blockState(this._block),
        parties: this._parties,
        timeout: this._timeout,
        action: this._action ? reduceFunction(this._action, 'the Barrier action', ctx) : null,
      },
    };
  }
}
registerReducer('Barrier', (state: { block: BlockState; parties: number; timeout: number | null; action: (() => unknown) | null }) =>
  attachAs(() => new Barrier(state.parties, state.action, state.timeout), attachBlock(state.block)),
);

registerClasses({ Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event, Barrier });
