/**
 * The redis context (`mp.getContext('redis', { url })`): the same Pool and Process API, with the
 * work done by worker programs on any machine that reaches Redis, and objects (queues, locks,
 * events, barriers, values, a manager's containers) that live in Redis (objects.ts and the modules
 * beside it). What it cannot provide (Array, Pipe) says so instead of handing out objects of this
 * machine.
 */
import { BaseContext, setRedisContextFactory, type ContextMethod } from '../context.js';
import { NotAvailableError } from '../errors.js';
import type { PoolOptions } from '../pool.js';
import { Process, processClassFor } from '../process.js';
import { constructible } from '../util.js';
import { redisSettings, type RedisContextOptions, type RedisSettings } from './client.js';
import { spaceFor, type Birth, type ObjectSpace } from './objects.js';
import { RedisPool } from './pool.js';
import { RedisBackend } from './process.js';
import { JoinableQueue, Queue, SimpleQueue } from './queues.js';

type Factory<A extends unknown[], R> = { (...args: A): R; new (...args: A): R };

/** The factories whose objects live in Redis, with their own types (Promises where they talk to Redis). */
export interface RedisFactories {
  Queue: { <T = unknown>(maxsize?: number): Queue<T>; new <T = unknown>(maxsize?: number): Queue<T> };
  JoinableQueue: { <T = unknown>(maxsize?: number): JoinableQueue<T>; new <T = unknown>(maxsize?: number): JoinableQueue<T> };
  SimpleQueue: { <T = unknown>(): SimpleQueue<T>; new <T = unknown>(): SimpleQueue<T> };
}

function notAvailable(name: string, instead: string): never {
  throw new NotAvailableError(`${name} is not available on the redis context: ${instead}`);
}

/** A factory of the redis context, typed as BaseContext's (the public type, RedisContext, says
 * what it really makes). */
function redisFactory<K extends keyof BaseContext>(make: (...args: never[]) => object, cls: () => abstract new (...args: never[]) => object): BaseContext[K] {
  return constructible<BaseContext[K]>(make, cls);
}

class RedisContextImpl extends BaseContext {
  readonly settings: RedisSettings;
  private readonly processClass: typeof Process;

  constructor(options: RedisContextOptions = {}) {
    super();
    this.settings = redisSettings(options);
    this.processClass = processClassFor(new RedisBackend(this.settings), 'RedisProcess');
  }

  override readonly Pool: Factory<[processes?: number | null | PoolOptions, options?: PoolOptions], RedisPool> = constructible(
    (processes?: number | null | PoolOptions, options: PoolOptions = {}) => new RedisPool(this.settings, processes, options),
    () => RedisPool,
  );

  override get Process(): typeof Process {
    return this.processClass;
  }

  override getStartMethod(): ContextMethod {
    return 'redis';
  }

  /** @internal Where this context's objects live (one connection per Redis in a process). */
  get _space(): ObjectSpace {
    return spaceFor(this.settings.url);
  }

  /** @internal How its objects are made: with its keys' TTL. */
  _birth(): Birth {
    return { settings: { ttl: this.settings.keyTtl } };
  }

  override readonly Queue = redisFactory<'Queue'>((maxsize?: number) => new Queue(this._space, this._birth(), maxsize), () => Queue);
  override readonly JoinableQueue = redisFactory<'JoinableQueue'>(
    (maxsize?: number) => new JoinableQueue(this._space, this._birth(), maxsize),
    () => JoinableQueue,
  );
  override readonly SimpleQueue = redisFactory<'SimpleQueue'>(() => new SimpleQueue(this._space, this._birth()), () => SimpleQueue);

  override readonly Lock = constructible<BaseContext['Lock']>(() => notAvailable('Lock', 'not yet'));
  override readonly RLock = constructible<BaseContext['RLock']>(() => notAvailable('RLock', 'not yet'));
  override readonly Semaphore = constructible<BaseContext['Semaphore']>(() => notAvailable('Semaphore', 'not yet'));
  override readonly BoundedSemaphore = constructible<BaseContext['BoundedSemaphore']>(() => notAvailable('BoundedSemaphore', 'not yet'));
  override readonly Condition = constructible<BaseContext['Condition']>(() => notAvailable('Condition', 'not yet'));
  override readonly Event = constructible<BaseContext['Event']>(() => notAvailable('Event', 'not yet'));
  override readonly Barrier = constructible<BaseContext['Barrier']>(() => notAvailable('Barrier', 'not yet'));
  override readonly RawValue = constructible<BaseContext['RawValue']>(() => notAvailable('RawValue', 'not yet'));
  override readonly RawArray = constructible<BaseContext['RawArray']>(() => notAvailable('RawArray', 'not yet'));
  override readonly Value = constructible<BaseContext['Value']>(() => notAvailable('Value', 'not yet'));
  override readonly Array = constructible<BaseContext['Array']>(() => notAvailable('Array', 'not yet'));
  override readonly Pipe = constructible<BaseContext['Pipe']>(() => notAvailable('Pipe', 'not yet'));
  override readonly Manager = async (): Promise<never> => notAvailable('Manager', 'not yet');

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

setRedisContextFactory((options) => new RedisContextImpl(options));
