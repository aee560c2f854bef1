/**
 * The redis context (`mp.getContext('redis', { url })`): the same Pool and Process API, with the
 * work done by worker programs on any machine that reaches Redis, and objects (queues, locks,
 * events, barriers, values, a manager's containers) that live in Redis (objects.ts and the modules
 * beside it). What it cannot provide (Array, Pipe) says so instead of handing out objects of this
 * machine.
 */
import { BaseContext, registerContext } from '../context.js';
import { NotAvailableError } from '../errors.js';
import type { PoolOptions } from '../pool.js';
import { Process, processClassFor } from '../process.js';
import type { Typecode, TypecodeValue } from '../sharedctypes.js';
import { constructible } from '../util.js';
import { redisSettings, type RedisContextOptions, type RedisSettings } from './settings.js';
import { ObjectFactories, type RedisValueOptions } from './factories.js';
import { RedisManager } from './managers.js';
import { spaceFor } from './objects.js';
import { RedisPool } from './pool.js';
import { RedisBackend } from './process.js';
import { JoinableQueue, Queue, SimpleQueue } from './queues.js';
import { Value } from './sharedctypes.js';
import { Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, type LeaseOptions } from './synchronize.js';

type Factory<A extends unknown[], R> = { (...args: A): R; new (...args: A): R };

/** The factories whose objects live in Redis, with their own types (Promises where they talk to Redis). */
interface RedisFactories {
  Queue: { <T = unknown>(maxsize?: number): Queue<T>; new <T = unknown>(maxsize?: number): Queue<T> };
  JoinableQueue: { <T = unknown>(maxsize?: number): JoinableQueue<T>; new <T = unknown>(maxsize?: number): JoinableQueue<T> };
  SimpleQueue: { <T = unknown>(): SimpleQueue<T>; new <T = unknown>(): SimpleQueue<T> };
  Lock: Factory<[options?: LeaseOptions], Lock>;
  RLock: Factory<[options?: LeaseOptions], RLock>;
  Semaphore: Factory<[value?: number], Semaphore>;
  BoundedSemaphore: Factory<[value?: number], BoundedSemaphore>;
  Condition: Factory<[lock?: Lock | RLock | null], Condition>;
  Event: Factory<[], Event>;
  Barrier: Factory<[parties: number, action?: (() => unknown) | null, timeout?: number | null], Barrier>;
  Value: {
    <T extends Typecode>(typecode: T, value?: TypecodeValue[T] | number, options?: RedisValueOptions): Value<T>;
    new <T extends Typecode>(typecode: T, value?: TypecodeValue[T] | number, options?: RedisValueOptions): Value<T>;
  };
  RawValue: {
    <T extends Typecode>(typecode: T, value?: TypecodeValue[T] | number): Value<T>;
    new <T extends Typecode>(typecode: T, value?: TypecodeValue[T] | number): Value<T>;
  };
  /** A manager whose dict, list and Namespace (and queues, locks...) live in Redis. */
  Manager: () => Promise<RedisManager>;
}

function notAvailable(name: string, instead: string): never {
  throw new NotAvailableError(`${name} is not available on the redis context: ${instead}`);
}

/** A factory of the redis context, typed as BaseContext's (RedisContext says what it makes). */
function redisFactory<K extends keyof BaseContext>(make: (...args: never[]) => object, cls: () => abstract new (...args: never[]) => object): BaseContext[K] {
  return constructible<BaseContext[K]>(make, cls);
}

class RedisContextImpl extends BaseContext {
  readonly settings: RedisSettings;
  private readonly processClass: typeof Process;
  private readonly factories: ObjectFactories;

  constructor(options: RedisContextOptions = {}) {
    super();
    this.settings = redisSettings(options);
    this.factories = new ObjectFactories(this.settings);
    this.processClass = processClassFor(new RedisBackend(this.settings), 'RedisProcess');
  }

  override readonly Pool: Factory<[processes?: number | null | PoolOptions, options?: PoolOptions], RedisPool> = constructible(
    (processes?: number | null | PoolOptions, options: PoolOptions = {}) => new RedisPool(this.settings, processes, options),
    () => RedisPool,
  );

  override get Process(): typeof Process {
    return this.processClass;
  }

  override getStartMethod(): 'redis' {
    return 'redis';
  }

  override readonly Queue = redisFactory<'Queue'>((maxsize?: number) => this.factories.Queue(maxsize), () => Queue);
  override readonly JoinableQueue = redisFactory<'JoinableQueue'>((maxsize?: number) => this.factories.JoinableQueue(maxsize), () => JoinableQueue);
  override readonly SimpleQueue = redisFactory<'SimpleQueue'>(() => this.factories.SimpleQueue(), () => SimpleQueue);
  override readonly Lock = redisFactory<'Lock'>((options?: LeaseOptions) => this.factories.Lock(options), () => Lock);
  override readonly RLock = redisFactory<'RLock'>((options?: LeaseOptions) => this.factories.RLock(options), () => RLock);
  override readonly Semaphore = redisFactory<'Semaphore'>((value?: number) => this.factories.Semaphore(value), () => Semaphore);
  override readonly BoundedSemaphore = redisFactory<'BoundedSemaphore'>(
    (value?: number) => this.factories.BoundedSemaphore(value),
    () => BoundedSemaphore,
  );
  override readonly Condition = redisFactory<'Condition'>((lock?: Lock | RLock | null) => this.factories.Condition(lock), () => Condition);
  override readonly Event = redisFactory<'Event'>(() => this.factories.Event(), () => Event);
  override readonly Barrier = redisFactory<'Barrier'>(
    (parties: number, action?: (() => unknown) | null, timeout?: number | null) => this.factories.Barrier(parties, action, timeout),
    () => Barrier,
  );
  override readonly Value = redisFactory<'Value'>(
    (typecode: Typecode, value?: number, options?: RedisValueOptions) => this.factories.Value(typecode, value, options),
    () => Value,
  );
  override readonly RawValue = redisFactory<'RawValue'>((typecode: Typecode, value?: number) => this.factories.RawValue(typecode, value), () => Value);
  override readonly RawArray = constructible<BaseContext['RawArray']>(() =>
    notAvailable('RawArray', 'use a list of a manager ((await ctx.Manager()).list(...)) or one Value per element.'));
  override readonly Array = constructible<BaseContext['Array']>(() =>
    notAvailable('Array', 'use a list of a manager ((await ctx.Manager()).list(...)) or one Value per element.'));
  override readonly Pipe = constructible<BaseContext['Pipe']>(() =>
    notAvailable('Pipe', 'a Pipe joins two ends on one machine; use a Queue (ctx.Queue()) between processes on any machine.'));
  override readonly Manager = (async () => new RedisManager(this.settings)) as unknown as BaseContext['Manager'];

  /** Lets go of every object this process holds in this context's Redis (their keys are deleted
   * where no other process holds them) and closes its connections to it; done at exit anyway. */
  async shutdown(): Promise<void> {
    await spaceFor(this.settings.url).shutdown();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }
}

/** The redis context: BaseContext's functions, and factories whose objects live in Redis. */
export type RedisContext = Omit<RedisContextImpl, keyof RedisFactories> & RedisFactories;
export const RedisContext = RedisContextImpl as unknown as { new (options?: RedisContextOptions): RedisContext; prototype: RedisContext };

registerContext('redis', (options) => new RedisContextImpl(options as RedisContextOptions | undefined));
