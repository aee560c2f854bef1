/**
 * The waiting primitives a SyncManager's server holds (Python's `queue.Queue` and the `threading`
 * primitives behind `manager.Queue()`, `manager.Lock()`, ...). They live in the server process
 * only, and every call reaches them through the server, one connection per waiting client: so
 * they are in-process and asynchronous, written once on `Waiters`, and a call's owner (for RLock)
 * and cancellation (the client hung up) come from `callerContext`.
 */
import { BrokenBarrierError, emptyQueue, fullQueue, RuntimeError, ValueError } from '../errors.js';
import { serializable } from '../tasks.js';
import { deadlineAfter, secondsUntil } from '../futex.js';
import { timerDelayMs } from '../util.js';
import { pyRepr, pyReprSymbol } from './pyvalues.js';
import { callerContext, local, named } from './referents.js';

// ---- waiting, once for every primitive ---------------------------------------------------------

/** A FIFO of waiters: `wait` resolves true when woken, false at the timeout, and rejects when the
 * caller's connection closes. */
class Waiters {
  private readonly queue: ((woken: boolean) => void)[] = [];

  get length(): number {
    return this.queue.length;
  }

  wait(timeout: number | null | undefined): Promise<boolean> {
    const signal = callerContext.getStore()?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (timeout !== null && timeout !== undefined && !(timeout > 0)) return Promise.resolve(false);
    return new Promise<boolean>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const settle = (woken: boolean): void => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(woken);
      };
      const remove = (): void => {
        const i = this.queue.indexOf(settle);
        if (i >= 0) this.queue.splice(i, 1);
      };
      const onAbort = (): void => {
        remove();
        if (timer) clearTimeout(timer);
        reject(signal!.reason);
      };
      this.queue.push(settle);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeout !== null && timeout !== undefined) {
        timer = setTimeout(() => {
          remove();
          settle(false);
        }, timerDelayMs(timeout));
      }
    });
  }

  wakeOne(): boolean {
    const next = this.queue.shift();
    next?.(true);
    return next !== undefined;
  }

  wakeAll(): void {
    for (const w of this.queue.splice(0)) w(true);
  }
}

function checkTimeout(timeout: unknown): void {
  if (timeout !== null && timeout !== undefined && (typeof timeout !== 'number' || Number.isNaN(timeout))) {
    throw new TypeError('timeout must be a number or null');
  }
}

// ---- queue.Queue ---------------------------------------------------------------------------

/** Python's `queue.Queue` (behind both `manager.Queue()` and `manager.JoinableQueue()`). */
export class ManagedQueue {
  private readonly items: unknown[] = [];
  private head = 0;
  private unfinished = 0;
  private readonly notEmpty = new Waiters();
  private readonly notFull = new Waiters();
  private readonly allDone = new Waiters();
  readonly maxsize: number;

  constructor(maxsize = 0) {
    this.maxsize = maxsize;
  }

  qsize(): number {
    return this.items.length - this.head;
  }

  empty(): boolean {
    return this.qsize() === 0;
  }

  full(): boolean {
    return this.maxsize > 0 && this.qsize() >= this.maxsize;
  }

  /** How Empty and Full name this queue (private: not a method proxies may call). */
  get #label(): string {
    return `the manager's Queue (maxsize=${this.maxsize})`;
  }

  async put(item: unknown, block = true, timeout: number | null = null): Promise<void> {
    checkTimeout(timeout);
    if (timeout !== null && timeout !== undefined && timeout < 0) throw new ValueError("'timeout' must be a non-negative number");
    const until = block ? deadlineAfter(timeout) : 0;
    while (this.full()) {
      if (!block || !(await this.notFull.wait(secondsUntil(until))) && this.full()) throw fullQueue(this.#label, block, timeout);
    }
    this.items.push(item);
    this.unfinished++;
    this.notEmpty.wakeOne();
  }

  putNowait(item: unknown): Promise<void> {
    return this.put(item, false);
  }

  async get(block = true, timeout: number | null = null): Promise<unknown> {
    checkTimeout(timeout);
    if (timeout !== null && timeout !== undefined && timeout < 0) throw new ValueError("'timeout' must be a non-negative number");
    const until = block ? deadlineAfter(timeout) : 0;
    while (this.empty()) {
      if (!block || !(await this.notEmpty.wait(secondsUntil(until))) && this.empty()) throw emptyQueue(this.#label, block, timeout);
    }
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    this.notFull.wakeOne();
    return item;
  }

  getNowait(): Promise<unknown> {
    return this.get(false);
  }

  taskDone(): void {
    if (this.unfinished <= 0) throw new ValueError('task_done() called too many times');
    if (--this.unfinished === 0) this.allDone.wakeAll();
  }

  async join(): Promise<void> {
    while (this.unfinished > 0) await this.allDone.wait(null);
  }
}
named(ManagedQueue, 'Queue');
serializable(ManagedQueue);

// ---- threading primitives ----------------------------------------------------------------

/** Python's `threading.Lock`: no owner; a release of an unlocked lock raises RuntimeError. */
export class ManagedLock {
  private held = false;
  private readonly waiters = new Waiters();

  async acquire(blocking = true, timeout: number | null = null): Promise<boolean> {
    checkTimeout(timeout);
    if (!blocking && timeout !== null && timeout !== undefined) throw new ValueError("can't specify a timeout for a non-blocking call");
    const until = blocking ? deadlineAfter(timeout) : 0;
    while (this.held) {
      if (!blocking) return false;
      const woken = await this.waiters.wait(secondsUntil(until));
      if (!woken && this.held) return false;
    }
    this.held = true;
    return true;
  }

  release(): void {
    if (!this.held) throw new RuntimeError('release unlocked lock');
    this.held = false;
    this.waiters.wakeOne();
  }

  locked(): boolean {
    return this.held;
  }

  /** @internal For Condition: how to give the lock up entirely and take it back. */
  _releaseSave(): unknown {
    this.release();
    return null;
  }
  async _acquireRestore(): Promise<void> {
    await this.acquire();
  }
  _isOwned(): boolean {
    return this.held;
  }

  [pyReprSymbol](): string {
    return `<${this.held ? 'locked' : 'unlocked'} _thread.lock object>`;
  }
}
named(ManagedLock, '_thread.lock');
serializable(ManagedLock);

function caller(): string {
  return callerContext.getStore()?.client ?? 'server';
}

/** Python's `threading.RLock`: owned by one client (process and thread) at a time. */
export class ManagedRLock {
  private owner: string | null = null;
  private count = 0;
  private readonly waiters = new Waiters();

  async acquire(blocking = true, timeout: number | null = null): Promise<boolean> {
    checkTimeout(timeout);
    if (!blocking && timeout !== null && timeout !== undefined) throw new ValueError("can't specify a timeout for a non-blocking call");
    const me = caller();
    if (this.owner === me) {
      this.count++;
      return true;
    }
    const until = blocking ? deadlineAfter(timeout) : 0;
    while (this.owner !== null) {
      if (!blocking) return false;
      const woken = await this.waiters.wait(secondsUntil(until));
      if (!woken && this.owner !== null) return false;
    }
    this.owner = me;
    this.count = 1;
    return true;
  }

  release(): void {
    if (this.owner !== caller()) throw new RuntimeError('cannot release un-acquired lock');
    if (--this.count === 0) {
      this.owner = null;
      this.waiters.wakeOne();
    }
  }

  _releaseSave(): unknown {
    if (this.owner !== caller()) throw new RuntimeError('cannot release un-acquired lock');
    const saved = [this.owner, this.count];
    this.owner = null;
    this.count = 0;
    this.waiters.wakeOne();
    return saved;
  }

  async _acquireRestore(saved: unknown): Promise<void> {
    await this.acquire();
    const [owner, count] = saved as [string, number];
    this.owner = owner;
    this.count = count;
  }

  _isOwned(): boolean {
    return this.owner === caller();
  }

  [pyReprSymbol](): string {
    return `<${this.owner ? 'locked' : 'unlocked'} _thread.RLock object owner=${pyRepr(this.owner ?? 0)} count=${this.count}>`;
  }
}
named(ManagedRLock, '_thread.RLock');
serializable(ManagedRLock);

/** Python's `threading.Semaphore`. */
export class ManagedSemaphore {
  protected value: number;
  private readonly waiters = new Waiters();

  constructor(value = 1) {
    if (value < 0) throw new ValueError('semaphore initial value must be >= 0');
    this.value = value;
  }

  async acquire(blocking = true, timeout: number | null = null): Promise<boolean> {
    checkTimeout(timeout);
    if (!blocking && timeout !== null && timeout !== undefined) throw new ValueError("can't specify timeout for non-blocking acquire");
    const until = blocking ? deadlineAfter(timeout) : 0;
    while (this.value === 0) {
      if (!blocking) return false;
      const woken = await this.waiters.wait(secondsUntil(until));
      if (!woken && this.value === 0) return false;
    }
    this.value--;
    return true;
  }

  release(n = 1): void {
    if (n < 1) throw new ValueError('n must be one or more');
    this.value += n;
    for (let i = 0; i < n; i++) this.waiters.wakeOne();
  }

  [pyReprSymbol](): string {
    return `<${this.constructor.name} value=${this.value}>`;
  }
}
named(ManagedSemaphore, 'threading.Semaphore');
serializable(ManagedSemaphore);

/** Python's `threading.BoundedSemaphore`. */
export class ManagedBoundedSemaphore extends ManagedSemaphore {
  private readonly initial: number;

  constructor(value = 1) {
    super(value);
    this.initial = value;
  }

  override release(n = 1): void {
    if (n < 1) throw new ValueError('n must be one or more');
    if (this.value + n > this.initial) throw new ValueError('Semaphore released too many times');
    super.release(n);
  }
}
named(ManagedBoundedSemaphore, 'threading.BoundedSemaphore');
serializable(ManagedBoundedSemaphore);

type ConditionLock = ManagedLock | ManagedRLock;

/** Python's `threading.Condition(lock=None)` (an RLock by default). */
export class ManagedCondition {
  readonly lock: ConditionLock;
  private readonly waiters = new Waiters();

  constructor(lock?: ConditionLock | null) {
    const resolved = local(lock);
    if (resolved !== null && resolved !== undefined && !(resolved instanceof ManagedLock || resolved instanceof ManagedRLock)) {
      throw new TypeError('a managed Condition takes a Lock or RLock of the same manager');
    }
    this.lock = (resolved as ConditionLock | null | undefined) ?? new ManagedRLock();
  }

  acquire(blocking = true, timeout: number | null = null): Promise<boolean> {
    return this.lock.acquire(blocking, timeout);
  }

  release(): void {
    this.lock.release();
  }

  async wait(timeout: number | null = null): Promise<boolean> {
    checkTimeout(timeout);
    if (!this.lock._isOwned()) throw new RuntimeError('cannot wait on un-acquired lock');
    const waiting = this.waiters.wait(timeout);
    const saved = this.lock._releaseSave();
    let woken = false;
    try {
      woken = await waiting;
    } finally {
      await this.lock._acquireRestore(saved);
    }
    return woken;
  }

  notify(n = 1): void {
    if (!this.lock._isOwned()) throw new RuntimeError('cannot notify on un-acquired lock');
    for (let i = 0; i < n; i++) if (!this.waiters.wakeOne()) break;
  }

  notifyAll(): void {
    if (!this.lock._isOwned()) throw new RuntimeError('cannot notify on un-acquired lock');
    this.waiters.wakeAll();
  }

  [pyReprSymbol](): string {
    return `<Condition(${pyRepr(this.lock)}, ${this.waiters.length})>`;
  }
}
named(ManagedCondition, 'threading.Condition');
serializable(ManagedCondition);

/** Python's `threading.Event`. */
export class ManagedEvent {
  private flag = false;
  private readonly waiters = new Waiters();

  isSet(): boolean {
    return this.flag;
  }

  set(): void {
    this.flag = true;
    this.waiters.wakeAll();
  }

  clear(): void {
    this.flag = false;
  }

  async wait(timeout: number | null = null): Promise<boolean> {
    checkTimeout(timeout);
    if (this.flag) return true;
    await this.waiters.wait(timeout);
    return this.flag;
  }

  [pyReprSymbol](): string {
    return `<threading.Event: ${this.flag ? 'set' : 'unset'}>`;
  }
}
named(ManagedEvent, 'threading.Event');
serializable(ManagedEvent);

type BarrierState = 'filling' | 'draining' | 'resetting' | 'broken';

/** Python's `threading.Barrier(parties, action=None, timeout=None)`. */
export class ManagedBarrier {
  private state: BarrierState = 'filling';
  private count = 0;
  private readonly waiters = new Waiters();

  constructor(
    readonly parties: number,
    private readonly action: (() => unknown) | null = null,
    private readonly timeout: number | null = null,
  ) {
    if (!(parties >= 1)) throw new ValueError('parties must be >= 1');
  }

  get nWaiting(): number {
    return this.state === 'filling' ? this.count : 0;
  }

  get broken(): boolean {
    return this.state === 'broken';
  }

  async wait(timeout: number | null = null): Promise<number> {
    const t = timeout ?? this.timeout;
    checkTimeout(t);
    // Python's Barrier: wait out a draining or resetting cycle, then fill the next one.
    while (this.state === 'draining' || this.state === 'resetting') await this.waiters.wait(null);
    if (this.state === 'broken') throw new BrokenBarrierError();
    const index = this.count++;
    try {
      if (index + 1 === this.parties) {
        try {
          if (this.action) await this.action();
        } catch (error) {
          this.breakBarrier();
          throw error;
        }
        this.state = 'draining';
        this.waiters.wakeAll();
      } else {
        const until = deadlineAfter(t);
        while (this.state === 'filling') {
          const woken = await this.waiters.wait(secondsUntil(until));
          if (!woken && this.state === 'filling') {
            this.breakBarrier();
            throw new BrokenBarrierError();
          }
        }
        if (this.state === 'broken' || this.state === 'resetting') throw new BrokenBarrierError();
      }
      return index;
    } finally {
      this.count--;
      const state = this.state as BarrierState;
      if (this.count === 0 && (state === 'draining' || state === 'resetting')) {
        this.state = 'filling';
        this.waiters.wakeAll();
      }
    }
  }

  reset(): void {
    if (this.count > 0) {
      if (this.state === 'filling' || this.state === 'broken') this.state = 'resetting';
      this.waiters.wakeAll();
    } else {
      this.state = 'filling';
    }
  }

  abort(): void {
    this.breakBarrier();
  }

  private breakBarrier(): void {
    this.state = 'broken';
    this.waiters.wakeAll();
  }

  [pyReprSymbol](): string {
    return `<threading.Barrier at 0x0: waiters=${this.nWaiting}/${this.parties}>`;
  }
}
named(ManagedBarrier, 'threading.Barrier');
serializable(ManagedBarrier);
