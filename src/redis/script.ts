/**
 * Lua scripts: how a step of the redis context that reads and then writes stays atomic.
 */
import { nodeCrypto } from '../util.js';

type ScriptArg = string | number | Buffer;
type Eval = (script: string, numKeys: number, ...rest: ScriptArg[]) => Promise<unknown>;

/** What a script needs of a connection (an ioredis client is one; written out here so that this
 * module's types, which the package's public types reach, never name ioredis's). */
export interface ScriptClient {
  evalsha: Eval;
  eval: Eval;
}

/**
 * A Lua script run with EVALSHA, sent again with EVAL when Redis does not know it (after a restart,
 * or the first time).
 */
export class RedisScript {
  #sha: string | undefined;
  constructor(
    readonly name: string,
    readonly lua: string,
  ) {}

  /** The script's SHA1, computed on first use (scripts are made when the module loads: hashing
   * them all then would load node:crypto into every program that imports the library). */
  get sha(): string {
    return (this.#sha ??= nodeCrypto().createHash('sha1').update(this.lua).digest('hex'));
  }

  run(client: ScriptClient, keys: string[], args: ScriptArg[]): Promise<unknown> {
    return this.call(keys, args, (...a) => client.evalsha(...a), (...a) => client.eval(...a));
  }

  /** The same, with binary replies (Buffers instead of strings). */
  runBuffer(client: ScriptClient, keys: string[], args: ScriptArg[]): Promise<unknown> {
    // ioredis has evalshaBuffer/evalBuffer but its types omit them (and its callBuffer loses the
    // command name under auto-pipelining).
    const binary = client as unknown as { evalshaBuffer: Eval; evalBuffer: Eval };
    return this.call(keys, args, (...a) => binary.evalshaBuffer(...a), (...a) => binary.evalBuffer(...a));
  }

  private async call(keys: string[], args: ScriptArg[], bySha: Eval, bySource: Eval): Promise<unknown> {
    try {
      return await bySha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!String((error as Error).message).startsWith('NOSCRIPT')) throw error;
      return bySource(this.lua, keys.length, ...keys, ...args);
    }
  }
}
