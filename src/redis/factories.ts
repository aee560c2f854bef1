/**
 * How the redis context and its manager make objects: with the context's settings (its Redis,
 * keys' TTL, locks' lease), owned by the processes that hold them or by a manager.
 */
import { coerceValue, type Typecode, type TypecodeValue } from '../sharedctypes.js';
import type { RedisSettings } from './settings.js';
import { spaceFor, type Birth, type ObjectSpace, type RedisObject } from './objects.js';
import { JoinableQueue, Queue, SimpleQueue } from './queues.js';
import { Value, valueLock } from './sharedctypes.js';
import { Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, type LeaseOptions } from './synchronize.js';

/** How a Value is guarded: `true` (default) a new redis RLock, `false` none, or a redis lock. */
export interface RedisValueOptions {
  lock?: boolean | Lock | RLock | null;
}

export class ObjectFactories {
  constructor(
    readonly settings: RedisSettings,
    /** Made by a manager (it owns them), not held by processes. */
    private readonly managed = false,
    /** Told of each object made (a manager keeps them). */
    private readonly onMade?: (obj: RedisObject) => void,
  ) {}

  get space(): ObjectSpace {
    return spaceFor(this.settings.url);
  }

  make<O extends RedisObject>(build: (space: ObjectSpace, birth: Birth) => O): O {
    const obj = build(this.space, { settings: { ttl: this.settings.keyTtl, managed: this.managed } });
    this.onMade?.(obj);
    return obj;
  }

  Queue<T = unknown>(maxsize = 0): Queue<T> {
    return this.make((space, birth) => new Queue<T>(space, birth, maxsize));
  }
  JoinableQueue<T = unknown>(maxsize = 0): JoinableQueue<T> {
    return this.make((space, birth) => new JoinableQueue<T>(space, birth, maxsize));
  }
  SimpleQueue<T = unknown>(): SimpleQueue<T> {
    return this.make((space, birth) => new SimpleQueue<T>(space, birth));
  }
  Lock(options: LeaseOptions = {}): Lock {
    return this.make((space, birth) => new Lock(space, birth, options?.lease ?? this.settings.lease));
  }
  RLock(options: LeaseOptions = {}): RLock {
    return this.make((space, birth) => new RLock(space, birth, options?.lease ?? this.settings.lease));
  }
  Semaphore(value = 1): Semaphore {
    return this.make((space, birth) => new Semaphore(space, birth, value));
  }
  BoundedSemaphore(value = 1): BoundedSemaphore {
    return this.make((space, birth) => new BoundedSemaphore(space, birth, value));
  }
  Condition(lock?: Lock | RLock | null): Condition {
    const guard = lock ?? this.RLock();
    return this.make((space, birth) => new Condition(space, birth, guard, !lock));
  }
  Event(): Event {
    return this.make((space, birth) => new Event(space, birth));
  }
  Barrier(parties: number, action?: (() => unknown) | null, timeout?: number | null): Barrier {
    return this.make((space, birth) => new Barrier(space, birth, parties, action, timeout));
  }
  Value<T extends Typecode>(typecode: T, value?: TypecodeValue[T] | number, options: RedisValueOptions = {}): Value<T> {
    coerceValue(typecode, value ?? 0); // a bad typecode or value fails before its lock is made
    const given = options?.lock;
    const lock = valueLock(given, () => this.RLock());
    const ownsLock = given === true || given === undefined || given === null;
    return this.make((space, birth) => new Value<T>(space, birth, typecode, value, lock, ownsLock));
  }
  RawValue<T extends Typecode>(typecode: T, value?: TypecodeValue[T] | number): Value<T> {
    return this.Value(typecode, value, { lock: false });
  }
}
