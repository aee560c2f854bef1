/**
 * How a function or class is named when it goes to another machine, and which names a receiver
 * accepts. Locally a task is found by its module's file URL; another machine has other paths, so
 * the module is named relative to its project root (the nearest package.json) with a hash of its
 * content, and the receiver maps that name back to a module it has imported itself, refusing every
 * other module, different code, and (unless allowed) functions sent as source text: whoever can
 * write to Redis must not be able to run code on a worker.
 */
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PicklingError, UnpicklingError } from '../errors.js';
import {
  loads, loadsSync, needsRebuild, newReduceContext, type RebuildContext, type ReduceContext, type RemoteNaming,
  type RemoteResolving,
} from '../reduction.js';
import { taskModules, type TaskRef } from '../tasks.js';
import { isLibraryModule } from '../packageFiles.js';
import { nodeCrypto } from '../util.js';

const rootCache = new Map<string, string | null>();

/** The directory of the nearest package.json above `file`. */
function projectRootOf(file: string): string | null {
  const dir = dirname(file);
  let root = rootCache.get(dir);
  if (root === undefined) {
    root = existsSync(join(dir, 'package.json')) ? dir : dirname(dir) === dir ? null : projectRootOf(dir);
    rootCache.set(dir, root);
  }
  return root;
}

interface ModuleName {
  /** The module's path relative to its project root, with `/` separators. */
  path: string;
  /** The first 16 hex digits of the SHA-256 of the module's file. */
  hash: string;
  url: string;
}

const names = new Map<string, ModuleName>();

/** The portable name of a module given by its file URL (read and hashed once per process). */
function moduleName(url: string): ModuleName {
  let name = names.get(url);
  if (!name) {
    const file = url.startsWith('file:') ? fileURLToPath(url) : null;
    const root = file && projectRootOf(file);
    if (!file || !root) {
      throw new PicklingError(
        `Can't send a task defined in ${url} to another machine: tasks are found there by their path ` +
          'in the project (the directory of the nearest package.json), and this module is in none.',
      );
    }
    const hash = nodeCrypto().createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 16);
    name = { path: relative(root, file).split(sep).join('/'), hash, url };
    names.set(url, name);
  }
  return name;
}

/** What the sender of a value puts in a reference: its module's project path and hash. */
export function portableRef(ref: TaskRef): TaskRef {
  const { path, hash } = moduleName(ref.module);
  return { module: path, key: ref.key, name: ref.name, hash };
}

/** Kinds of library objects that may travel to another machine (the redis context's own). */
const isRedisKind = (kind: string): boolean => kind.startsWith('redis.');

const naming: RemoteNaming = { name: portableRef, accepts: isRedisKind };

// One context serves every value (a task's arguments are reduced per task: a fresh context each
// time was a measurable part of a small task's cost). What reduce() writes into it is never read
// for another machine: the modules tasks come from (no forkserver preloads them there; the set
// holds each module once), and no transfer list or sockets (a process target refuses ports).
const remoteContext: ReduceContext = { ...newReduceContext('process'), remote: naming };

/** Where values for another machine are reduced: functions named by project path, only redis objects. */
export function remoteReduceContext(): ReduceContext {
  return remoteContext;
}

/** Decodes a value from another machine (`ctx.remote` says which references it may use). */
export function decodeRemote(body: Uint8Array, ctx: RebuildContext): unknown {
  return needsRebuild(body) ? loads(body, ctx) : loadsSync(body, ctx);
}

/** Which modules a receiver accepts references to, in a form that travels to its pool workers. */
export interface AllowListState {
  modules: Array<{ path: string; hash: string; url: string }>;
  allowSource: boolean;
  /** Who applies the list, for messages (`host:pid`). */
  owner: string;
  /** What the user passed (`--import ...`), for messages. */
  imports: string[];
}

/**
 * The modules a receiver takes references to: those it imported (`--import`), and the modules
 * they loaded that define tasks. Everything else is refused with a message that says what to do.
 */
export class ModuleAllowList implements RemoteResolving {
  private readonly byPath: Map<string, { hash: string; url: string }>;

  constructor(readonly state: AllowListState) {
    this.byPath = new Map(state.modules.map((m) => [m.path, { hash: m.hash, url: m.url }]));
  }

  /** The modules loaded in this process that define tasks (after the `--import`s). */
  static ofLoadedModules(imports: string[], allowSource: boolean): ModuleAllowList {
    const modules: AllowListState['modules'] = [];
    const loaded = taskModules().filter((url) => !isLibraryModule(url)); // the library's own tasks are not for Redis to call
    for (const url of new Set([...imports.map((i) => pathToFileURL(i).href), ...loaded])) {
      try {
        const { path, hash } = moduleName(url);
        modules.push({ path, hash, url });
      } catch {
        // Not in a project: nothing can name it.
      }
    }
    return new ModuleAllowList({ modules, allowSource, owner: `${hostname()}:${process.pid}`, imports });
  }

  get allowSource(): boolean {
    return this.state.allowSource;
  }

  /** The local reference a portable one stands for; throws if it is not allowed. */
  resolve(ref: TaskRef): TaskRef {
    const local = this.byPath.get(ref.module);
    const what = `${ref.name || 'the task'} (${ref.module})`;
    if (!local) {
      const allowed = this.state.imports.length ? this.state.imports.join(', ') : 'none';
      throw new UnpicklingError(
        `Refused to run ${what} on ${this.state.owner}: it runs tasks only from the modules it was ` +
          `told to import (--import: ${allowed}) and the modules they load. Add --import ./${ref.module} to the worker.`,
      );
    }
    if (ref.hash !== undefined && ref.hash !== local.hash) {
      throw new UnpicklingError(
        `Refused to run ${what} on ${this.state.owner}: its ${ref.module} differs from the caller's ` +
          `(sha256 ${local.hash} here, ${ref.hash} there). Deploy the same code to the caller and the workers.`,
      );
    }
    return { module: local.url, key: ref.key, name: ref.name };
  }

  refuseSource(name: string): never {
    throw new UnpicklingError(
      `Refused to run function ${name || '<anonymous>'} on ${this.state.owner}: it was sent as source ` +
        'text, and this worker runs only functions of the modules it imports (whoever can write to Redis ' +
        'could otherwise run code here). Define it with mp.task() in a module the worker imports, or start ' +
        'the worker with --allow-source.',
    );
  }
}

/**
 * What the sender of tasks accepts in the values that come back (results, errors): references to
 * the modules it has loaded itself, with the same code.
 */
export function senderResolving(): RemoteResolving {
  return {
    allowSource: false,
    resolve(ref: TaskRef): TaskRef {
      for (const url of taskModules()) {
        let name: ModuleName;
        try {
          name = moduleName(url);
        } catch {
          continue;
        }
        if (name.path !== ref.module) continue;
        if (ref.hash !== undefined && ref.hash !== name.hash) {
          throw new UnpicklingError(`A result refers to ${ref.module}, whose code differs between this process and the worker.`);
        }
        return { module: url, key: ref.key, name: ref.name };
      }
      throw new UnpicklingError(`A result refers to ${ref.name || 'a task or class'} of ${ref.module}, which this process has not loaded.`);
    },
    refuseSource(name: string): never {
      throw new UnpicklingError(`A result holds function ${name || '<anonymous>'} as source text, which is refused.`);
    },
  };
}

