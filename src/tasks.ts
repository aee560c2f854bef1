/**
 * Functions and classes that travel to another process.
 *
 * `task(fn)` and `serializable(Class)` record where the function or class was defined (the module
 * URL and the call site's line:col), so the other side imports that module, which calls `task()`
 * again at the same site, and finds it. Python pickles functions the same way: by module and name.
 * A plain function or class travels by its source text when it is self-contained.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Parser as AcornParser } from 'acorn';
import { PicklingError } from './errors.js';
import { isChild, whileBootstrapping } from './backends/childMark.js';

/** Where a task or class was defined: looked up again by `module` and `key` in the other process. */
export interface TaskRef {
  module: string;
  key: string;
  name: string;
  /** A hash of the module's file, when the reference goes to another machine (src/redis/naming.ts). */
  hash?: string;
}

interface Registry {
  byModule: Map<string, Map<string, unknown>>;
  refs: WeakMap<object, TaskRef>;
  siteCounts: Map<string, number>;
}

// On globalThis so that a second copy of the library (ESM and CJS side by side) shares one registry.
const registryKey = Symbol.for('multiprocessing-ts.tasks');
const globals = globalThis as unknown as Record<symbol, Registry | undefined>;
const registry: Registry = (globals[registryKey] ??= {
  byModule: new Map(),
  refs: new WeakMap(),
  siteCounts: new Map(),
});

export interface TaskOptions {
  /** The defining module (`import.meta.url`), for helpers that wrap `task()` in another module. */
  module?: string;
}

interface CallSiteLike {
  getFileName(): string | null | undefined;
  getLineNumber(): number | null;
  getColumnNumber(): number | null;
}

/** The file and position of whoever called `below`. Raw CallSites ignore source maps, so parent
 * and child (running the same loader) compute the same position. */
function callerSite(below: Function): { file: string | undefined; line: number; col: number } {
  const holder: { stack?: unknown } = {};
  const savedPrepare = Error.prepareStackTrace;
  const savedLimit = Error.stackTraceLimit;
  try {
    Error.prepareStackTrace = (_error, sites) => sites;
    Error.stackTraceLimit = 1;
    Error.captureStackTrace(holder, below);
    const site = (holder.stack as CallSiteLike[] | undefined)?.[0];
    return {
      file: site?.getFileName() ?? undefined,
      line: site?.getLineNumber() ?? 0,
      col: site?.getColumnNumber() ?? 0,
    };
  } finally {
    Error.prepareStackTrace = savedPrepare;
    Error.stackTraceLimit = savedLimit;
  }
}

function moduleUrlOf(file: string | undefined): string | undefined {
  if (!file) return undefined;
  if (file.startsWith('file:')) return existsSync(fileURLToPath(file)) ? file : undefined;
  if (file.startsWith('/') && existsSync(file)) return pathToFileURL(file).href;
  return undefined; // [eval], node:internal, REPL: nothing the child could import
}

function register(value: object, below: Function, options: TaskOptions | undefined): TaskRef | undefined {
  const site = callerSite(below);
  const module = options?.module ?? moduleUrlOf(site.file);
  if (!module) return undefined;
  const siteKey = `${site.line}:${site.col}`;
  const siteId = `${module}#${siteKey}`;
  // Loops call task() repeatedly from one site: the n-th call in the child matches the n-th here.
  const n = registry.siteCounts.get(siteId) ?? 0;
  registry.siteCounts.set(siteId, n + 1);
  const ref: TaskRef = { module, key: `${siteKey}#${n}`, name: (value as { name?: string }).name ?? '' };
  let keys = registry.byModule.get(module);
  if (!keys) registry.byModule.set(module, (keys = new Map()));
  keys.set(ref.key, value);
  registry.refs.set(value, ref);
  return ref;
}

/**
 * Marks `fn` as a task that other processes find by reference: they import the module that
 * defines it. Returns `fn` itself, callable locally as before.
 */
export function task<F extends (...args: never[]) => unknown>(fn: F, options?: TaskOptions): F {
  if (typeof fn !== 'function') throw new TypeError('mp.task() takes a function');
  if (!registry.refs.has(fn)) register(fn, task, options);
  return fn;
}

/**
 * Marks a class whose instances keep their prototype when they travel to another process (and
 * lets a `Process` subclass with its own `run()` be started). Returns the class.
 */
export function serializable<C extends abstract new (...args: never[]) => object>(cls: C, options?: TaskOptions): C {
  if (typeof cls !== 'function') throw new TypeError('mp.serializable() takes a class');
  if (!registry.refs.has(cls)) register(cls, serializable, options);
  return cls;
}

/** The modules (file URLs) loaded in this process that define tasks or classes. */
export function taskModules(): string[] {
  return [...registry.byModule.keys()];
}

export function refOf(value: object): TaskRef | undefined {
  return registry.refs.get(value);
}

const resolved = new Map<string, unknown>();

/** The task or class a reference names, if its module is already loaded here. */
export function lookupLoaded(ref: TaskRef): unknown {
  const id = `${ref.module}#${ref.key}`;
  const cached = resolved.get(id);
  if (cached !== undefined) return cached;
  const value = registry.byModule.get(ref.module)?.get(ref.key);
  if (value !== undefined) resolved.set(id, value);
  return value;
}

/** Imports the defining module (as Python's unpickler imports a function's module) and looks the
 * task up. In a child that import is Python's bootstrapping phase (the module is often the
 * program's entry module, re-imported), whenever it happens: a pool worker imports a task's module
 * when its first task arrives. */
export async function resolveRef(ref: TaskRef): Promise<unknown> {
  const loaded = lookupLoaded(ref);
  if (loaded !== undefined) return loaded;
  if (isChild()) await whileBootstrapping(() => import(ref.module));
  else await import(ref.module);
  const value = lookupLoaded(ref);
  if (value === undefined) {
    const known = [...(registry.byModule.get(ref.module)?.keys() ?? [])];
    throw new PicklingError(
      `Can't find ${ref.name || 'the task'} (defined at ${ref.module}:${ref.key}) in the child: ` +
        'importing its module did not call mp.task()/mp.serializable() at that place. Tasks must be ' +
        'created at module top level, outside `if (mp.isMain(...))` blocks and functions. ' +
        `Tasks known in that module: ${known.join(', ') || 'none'}.`,
    );
  }
  return value;
}

// ---- functions by source -------------------------------------------------------------------

/** A function sent by its source text. */
export interface SourceFunction {
  source: string;
  name: string;
}

const parserGlobals = new Set([...Object.getOwnPropertyNames(globalThis), 'arguments', 'undefined', '__name']);
const sourceChecks = new WeakMap<Function, SourceFunction>();

// The parser is loaded the first time a function travels by its source: loading it costs more than
// the rest of this module's imports together, and every process and thread of ours imports this
// module at start-up.
let parser: typeof AcornParser | undefined;

function parseFunction(source: string): unknown {
  const Parser = (parser ??= (createRequire(import.meta.url)('acorn') as typeof import('acorn')).Parser);
  const options = { ecmaVersion: 'latest', sourceType: 'script' } as const;
  try {
    return Parser.parseExpressionAt(`(${source})`, 0, options);
  } catch {
    // Method shorthand (`f(x) { ... }`, `async *g() {}`) parses inside an object literal.
    return Parser.parseExpressionAt(`({${source}})`, 0, options);
  }
}

type AstNode = { type: string; [key: string]: unknown };

function isNode(value: unknown): value is AstNode {
  return typeof value === 'object' && value !== null && typeof (value as AstNode).type === 'string';
}

/** Names used by a function that it neither declares nor finds among the globals. Declarations are
 * collected per function, not per block: a slight over-approximation that never rejects a
 * self-contained function. */
function freeNames(root: unknown): string[] {
  const declared = new Set<string>();
  const used = new Set<string>();
  const declarePattern = (pattern: unknown): void => {
    if (!isNode(pattern)) return;
    if (pattern.type === 'Identifier') declared.add(pattern.name as string);
    else if (pattern.type === 'ObjectPattern') {
      for (const p of pattern.properties as AstNode[]) declarePattern(p.type === 'RestElement' ? p.argument : p.value);
    } else if (pattern.type === 'ArrayPattern') (pattern.elements as unknown[]).forEach(declarePattern);
    else if (pattern.type === 'RestElement') declarePattern(pattern.argument);
    else if (pattern.type === 'AssignmentPattern') declarePattern(pattern.left);
  };
  const visit = (node: AstNode): void => {
    switch (node.type) {
      case 'Identifier':
        used.add(node.name as string);
        return;
      case 'FunctionDeclaration':
      case 'FunctionExpression':
      case 'ArrowFunctionExpression':
      case 'ClassDeclaration':
      case 'ClassExpression':
        if (node.id) declarePattern(node.id);
        for (const p of (node.params as unknown[] | undefined) ?? []) declarePattern(p);
        break;
      case 'VariableDeclarator':
        declarePattern(node.id);
        break;
      case 'CatchClause':
        declarePattern(node.param);
        break;
      case 'MemberExpression':
        visitChild(node.object);
        if (node.computed) visitChild(node.property);
        return;
      case 'Property':
      case 'MethodDefinition':
      case 'PropertyDefinition':
        if (node.computed) visitChild(node.key);
        visitChild(node.value);
        return;
      case 'LabeledStatement':
        visitChild(node.body);
        return;
      case 'BreakStatement':
      case 'ContinueStatement':
      case 'MetaProperty':
        return;
    }
    for (const key of Object.keys(node)) {
      if (key !== 'type') visitChild(node[key]);
    }
  };
  const visitChild = (child: unknown): void => {
    if (Array.isArray(child)) for (const c of child) visitChild(c);
    else if (isNode(child)) visit(child);
  };
  visitChild(root);
  return [...used].filter((name) => !declared.has(name) && !parserGlobals.has(name));
}

/**
 * The source form of a plain function or class, checked here so that a closure fails at the sender
 * with a message that names it and says what to do. A class travels as a function does: by its
 * source when it is self-contained (its methods use only their parameters, globals and imports
 * done inside them).
 */
export function sourceOf(fn: Function, path: string): SourceFunction {
  const cached = sourceChecks.get(fn);
  if (cached) return cached;
  const source = Function.prototype.toString.call(fn);
  const what = `${/^class\b/.test(source) ? 'class' : 'function'} ${fn.name || '<anonymous>'}`;
  const fix = what.startsWith('class')
    ? 'Mark it with mp.serializable() at module top level (or move it to a module and mark it there).'
    : 'Wrap it in mp.task() at module top level (or move it to a module and wrap it there).';
  if (/\{\s*\[native code\]\s*\}\s*$/.test(source)) {
    throw new PicklingError(`Can't send ${path}: ${what} is native or bound and has no source. ${fix}`);
  }
  let free: string[];
  try {
    free = freeNames(parseFunction(source));
  } catch {
    throw new PicklingError(`Can't send ${path}: the source of ${what} could not be parsed. ${fix}`);
  }
  if (free.length > 0) {
    throw new PicklingError(
      `Can't send ${path}: ${what} is sent by its source text but uses ${free
        .map((n) => `'${n}'`)
        .join(', ')} from its surroundings, which the other process does not have. ${fix}`,
    );
  }
  const result = { source, name: fn.name };
  sourceChecks.set(fn, result);
  return result;
}

const compiled = new Map<string, Function>();
// esbuild (tsx) inserts __name(fn, "name") calls into function bodies.
const nameShim = <T>(target: T): T => target;

/** Re-creates a function from its source text, in strict mode and with no outer scope. */
export function functionFromSource({ source, name }: SourceFunction): Function {
  let fn = compiled.get(source);
  if (fn) return fn;
  const tag = `\n//# sourceURL=mp-task-source:${encodeURIComponent(name || 'anonymous')}`;
  const indirectEval = eval;
  let factory: (shim: typeof nameShim) => unknown;
  try {
    factory = indirectEval(`'use strict'; (function (__name) { return (${source}); })${tag}`);
  } catch {
    factory = indirectEval(
      `'use strict'; (function (__name) { const o = ({${source}}); return o[Reflect.ownKeys(o)[0]]; })${tag}`,
    );
  }
  fn = factory(nameShim) as Function;
  compiled.set(source, fn);
  return fn;
}
