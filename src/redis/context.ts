/**
 * The redis context (`mp.getContext('redis', { url })`): the same Pool and Process API, with the
 * work done by worker programs on any machine that reaches Redis. Its objects (queues, locks,
 * events, values, managers) live in Redis; those not built yet say so instead of handing out
 * objects of this machine.
 */
import { BaseContext, registerContext } from '../context.js';
import { NotAvailableError } from '../errors.js';
import type { PoolOptions } from '../pool.js';
import { Process, processClassFor } from '../process.js';
import { constructible } from '../util.js';
import { redisSettings, type RedisContextOptions, type RedisSettings } from './client.js';
import { RedisPool } from './pool.js';
import { RedisBackend } from './process.js';

type Factory<A extends unknown[], R> = { (...args: A): R; new (...args: A): R };

function notYet(name: string): never {
  throw new NotAvailableError(`${name} is not available on the redis context yet: only Pool and Process are.`);
}

export class RedisContext extends BaseContext {
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

  override getStartMethod(): 'redis' {
    return 'redis';
  }

  // The objects of this machine's contexts cannot be shared through Redis.
  override readonly Lock = constructible<BaseContext['Lock']>(() => notYet('Lock'));
  override readonly RLock = constructible<BaseContext['RLock']>(() => notYet('RLock'));
  override readonly Semaphore = constructible<BaseContext['Semaphore']>(() => notYet('Semaphore'));
  override readonly BoundedSemaphore = constructible<BaseContext['BoundedSemaphore']>(() => notYet('BoundedSemaphore'));
  override readonly Condition = constructible<BaseContext['Condition']>(() => notYet('Condition'));
  override readonly Event = constructible<BaseContext['Event']>(() => notYet('Event'));
  override readonly Barrier = constructible<BaseContext['Barrier']>(() => notYet('Barrier'));
  override readonly Queue = constructible<BaseContext['Queue']>(() => notYet('Queue'));
  override readonly JoinableQueue = constructible<BaseContext['JoinableQueue']>(() => notYet('JoinableQueue'));
  override readonly SimpleQueue = constructible<BaseContext['SimpleQueue']>(() => notYet('SimpleQueue'));
  override readonly RawValue = constructible<BaseContext['RawValue']>(() => notYet('RawValue'));
  override readonly RawArray = constructible<BaseContext['RawArray']>(() => notYet('RawArray'));
  override readonly Value = constructible<BaseContext['Value']>(() => notYet('Value'));
  override readonly Array = constructible<BaseContext['Array']>(() => notYet('Array'));
  override readonly Pipe = constructible<BaseContext['Pipe']>(() => notYet('Pipe'));
  override readonly Manager = async (): Promise<never> => notYet('Manager');
}

registerContext('redis', (options) => new RedisContext(options as RedisContextOptions | undefined));
