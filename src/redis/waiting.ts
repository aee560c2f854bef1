/**
 * How the objects of the redis context wait, written once. Each object has one pub/sub channel
 * (the name of its main key); every script that changes what a waiter may be waiting for (an item
 * put, a lock released, an event set) publishes on it. A waiter subscribes, tries its step (a
 * script that either succeeds or says "not yet"), and tries again after each message, at its
 * deadline, or when the step said when the state will change by itself (a lease that expires, which
 * publishes nothing). There is no polling loop.
 *
 * A message can be lost only when the subscriber's connection breaks: after it is back (and the
 * channels subscribed again), every waiter tries again.
 */
import { abortable, throwIfAborted } from '../util.js';
import { connect, disconnect, keepAlive, type RedisClient } from './client.js';

/** What a step says: done (with its value), or not yet (and, maybe, in how many ms to look again). */
export type Step<T> = { done: true; value: T } | { done: false; retryInMs?: number };

export interface WaitOptions {
  /** false: one try, no wait. */
  block?: boolean;
  /** Seconds; null/undefined waits forever, a negative value counts as 0 (docs/api.md rule 3). */
  timeout?: number | null;
  signal?: AbortSignal;
}

/** How long a channel stays subscribed after its last waiter left (a consumer loop waits again soon). */
const LINGER_MS = 2000;

interface Channel {
  /** Messages seen (and reconnections): a waiter that saw `gen` before its step waits for a change. */
  gen: number;
  holders: number;
  subscribed: Promise<void>;
  listeners: Set<() => void>;
  linger: NodeJS.Timeout | null;
}

/** The wake-ups of one redis context in this process: one subscriber connection for all channels. */
export class Wakeups {
  private subscriber: Promise<RedisClient> | null = null;
  private readonly channels = new Map<string, Channel>();
  private closed = false;

  constructor(
    private readonly url: string,
    /** Resolves true once the steps' connection is up, false if it is still down at `until`
     * (performance.now() ms; Infinity waits as long as it takes). */
    private readonly reachable: (until: number, signal?: AbortSignal) => Promise<boolean> = async () => true,
  ) {}

  private connection(): Promise<RedisClient> {
    if (!this.subscriber) {
      const opening = connect(this.url, { role: 'objects-wakeups', blocking: true }).then((client) => {
        client.on('message', (channel: string) => this.wake(channel));
        // Messages published while the connection was down are lost: subscribe again, then every
        // waiter tries again.
        client.on('ready', () => {
          const names = [...this.channels.keys()];
          if (names.length === 0) return;
          void client.subscribe(...names).then(() => {
            for (const name of names) this.wake(name);
          }, () => {});
        });
        if (this.closed) disconnect(client);
        return client;
      });
      opening.catch(() => {
        if (this.subscriber === opening) this.subscriber = null; // the next waiter tries again
      });
      this.subscriber = opening;
    }
    return this.subscriber;
  }

  private wake(name: string): void {
    const channel = this.channels.get(name);
    if (!channel) return;
    channel.gen++;
    for (const listener of [...channel.listeners]) listener();
  }

  /** Subscribes to `name` (resolves once Redis confirmed) until the returned release is called. */
  private async hold(name: string): Promise<{ channel: Channel; release: () => void }> {
    let channel = this.channels.get(name);
    if (!channel) {
      const subscribed = this.connection().then((client) => client.subscribe(name)).then(() => {});
      channel = { gen: 0, holders: 0, subscribed, listeners: new Set(), linger: null };
      this.channels.set(name, channel);
      subscribed.catch(() => {
        if (this.channels.get(name) === channel) this.channels.delete(name);
      });
    }
    const c = channel;
    c.holders++;
    if (c.linger) {
      clearTimeout(c.linger);
      c.linger = null;
    }
    const release = (): void => {
      if (--c.holders > 0) return;
      c.linger = setTimeout(() => this.drop(name, c), LINGER_MS);
      c.linger.unref();
    };
    try {
      await c.subscribed;
    } catch (error) {
      release();
      throw error;
    }
    return { channel: c, release };
  }

  private drop(name: string, channel: Channel): void {
    if (channel.holders > 0 || this.channels.get(name) !== channel) return;
    this.channels.delete(name);
    void this.subscriber?.then((client) => client.unsubscribe(name)).catch(() => {});
  }

  /**
   * Runs `step` until it is done, waiting between tries for a message on `channel` (or the step's
   * own retry time), within `timeout` seconds and until `signal` aborts. Resolves the last step's
   * outcome: not done means the time ran out (or `block` was false). A step in flight is never
   * abandoned: an abort is seen between steps, so a step that succeeded is never lost. A step is
   * not sent while Redis is unreachable (it would wait there, past the timeout): the wait for
   * the connection counts against the timeout.
   */
  async waitFor<T>(channel: string, trial: () => Promise<Step<T>>, options: WaitOptions = {}): Promise<Step<T>> {
    throwIfAborted(options.signal);
    const release = keepAlive();
    try {
      const deadline = options.block === false ? performance.now() : deadlineAfter(options.timeout);
      let outOfTime = false;
      const step = async (): Promise<Step<T>> => {
        if (await this.reachable(deadline, options.signal)) return trial();
        outOfTime = true;
        return { done: false };
      };
      let outcome = await step();
      if (outcome.done || options.block === false || outOfTime) return outcome;
      if (performance.now() >= deadline) return outcome;
      // Subscribed before the next try: whatever changes after it publishes to us.
      const { channel: c, release: unsubscribe } = await this.hold(channel);
      try {
        for (;;) {
          const seen = c.gen;
          outcome = await step();
          if (outcome.done || outOfTime) return outcome;
          const now = performance.now();
          if (now >= deadline) return outcome;
          const retryAt = outcome.retryInMs === undefined ? Infinity : now + Math.max(0, outcome.retryInMs);
          await changed(c, seen, Math.min(deadline, retryAt), options.signal);
        }
      } finally {
        unsubscribe();
      }
    } finally {
      release();
    }
  }

  close(): void {
    this.closed = true;
    for (const c of this.channels.values()) if (c.linger) clearTimeout(c.linger);
    this.channels.clear();
    void this.subscriber?.then(disconnect, () => {});
    this.subscriber = null;
  }
}

/** Resolves when `channel` has seen a message since `seen`, or at `until` (performance.now() ms). */
function changed(channel: Channel, seen: number, until: number, signal: AbortSignal | undefined): Promise<void> {
  return abortable<void>(signal, (resolve) => {
    if (channel.gen !== seen) {
      resolve();
      return () => {};
    }
    let timer: NodeJS.Timeout | null = null;
    const done = (): void => {
      channel.listeners.delete(done);
      if (timer) clearTimeout(timer);
      resolve();
    };
    channel.listeners.add(done);
    if (until !== Infinity) timer = setTimeout(done, Math.min(Math.max(0, until - performance.now()), 2 ** 31 - 1));
    return () => {
      channel.listeners.delete(done);
      if (timer) clearTimeout(timer);
    };
  });
}

/** Python's timeout as a performance.now() deadline: Infinity for none, negative and NaN as 0. */
function deadlineAfter(timeout: number | null | undefined): number {
  if (timeout === null || timeout === undefined || timeout === Infinity) return Infinity;
  return performance.now() + (timeout > 0 ? timeout * 1000 : 0);
}
