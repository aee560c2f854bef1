/**
 * Python's value semantics for the managed containers: which dict keys are equal, `==` for
 * `list.index`/`count`/`remove`, `<` for `list.sort`, and `repr()` for messages and `str(proxy)`.
 *
 * Dict keys: a key is "hashable" when it is a primitive, an array of hashable values (a tuple) or a
 * Uint8Array (bytes). Primitives compare as JavaScript's Map compares them (SameValueZero), except
 * that a BigInt equal to a safe integer is the same key as that number (Python has one int type):
 * `1`, `'1'` and `0.25` are three keys, `1` and `1n` one. Tuples and bytes compare by content.
 * Booleans stay distinct from 1 and 0 (in Python `True == 1`; a JavaScript user does not expect it).
 */
import { IndexError } from '../errors.js';

/** A Python-style TypeError (for `unhashable type` and unorderable comparisons). */
function typeError(message: string): TypeError {
  return new TypeError(message);
}

/** The Python type name of a value, for messages. */
export function pyTypeName(value: unknown): string {
  if (value === null || value === undefined) return 'NoneType';
  switch (typeof value) {
    case 'boolean':
      return 'bool';
    case 'number':
      return Number.isInteger(value) ? 'int' : 'float';
    case 'bigint':
      return 'int';
    case 'string':
      return 'str';
    case 'function':
      return 'function';
  }
  if (Array.isArray(value)) return 'list';
  if (value instanceof Uint8Array) return 'bytes';
  if (value instanceof Map) return 'dict';
  if (value instanceof Set) return 'set';
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) return 'dict';
  return (proto.constructor as { name?: string })?.name || 'object';
}

// One token per tuple/bytes content; they live as long as the process (a dict's keys are few next
// to its values).
const compoundKeys = new Map<string, object>();

function canonical(key: unknown, where: string): string {
  switch (typeof key) {
    case 'number':
      return Object.is(key, -0) ? 'n:0' : `n:${key}`;
    case 'bigint':
      return Number.isSafeInteger(Number(key)) && BigInt(Number(key)) === key ? `n:${Number(key)}` : `i:${key}`;
    case 'string':
      return `s:${JSON.stringify(key)}`;
    case 'boolean':
      return `b:${key}`;
    case 'undefined':
      return 'u';
    case 'object':
      if (key === null) return 'z';
      if (Array.isArray(key)) return `t(${key.map((k) => canonical(k, where)).join(',')})`;
      if (key instanceof Uint8Array) return `y:${Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex')}`;
  }
  throw typeError(`unhashable type: '${pyTypeName(key)}'${where}`);
}

/** The text that stands for a hashable key: equal keys (as above) have the same text, and keys
 * that differ have different texts (a dict of the redis context stores its keys under it). */
export function canonicalKey(key: unknown): string {
  return canonical(key, '');
}

/**
 * The Map key that stands for `key`: the primitive itself (BigInts folded into numbers where they
 * are safe integers), or one interned object per tuple/bytes content, so insertion order and O(1)
 * lookup come from one ordinary Map.
 */
export function hashKey(key: unknown): unknown {
  switch (typeof key) {
    case 'number':
    case 'string':
    case 'boolean':
    case 'undefined':
      return key;
    case 'bigint': {
      const n = Number(key);
      return Number.isSafeInteger(n) && BigInt(n) === key ? n : key;
    }
    case 'object': {
      if (key === null) return null;
      const c = canonical(key, '');
      let token = compoundKeys.get(c);
      if (!token) {
        token = Object.freeze({ key: c });
        compoundKeys.set(c, token);
      }
      return token;
    }
  }
  throw typeError(`unhashable type: '${pyTypeName(key)}'`);
}

/** Python's `==` on the values the containers hold. */
export function pyEquals(a: unknown, b: unknown, seen = new Set<unknown>()): boolean {
  if (a === b) return true;
  if ((a === null || a === undefined) && (b === null || b === undefined)) return true;
  const ta = typeof a;
  const tb = typeof b;
  if ((ta === 'number' || ta === 'bigint') && (tb === 'number' || tb === 'bigint')) {
    // eslint-disable-next-line eqeqeq
    return (a as number) == (b as number);
  }
  if (ta !== 'object' || tb !== 'object' || a === null || b === null) return false;
  if (seen.has(a)) return true;
  seen.add(a);
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => pyEquals(x, b[i], seen));
  }
  if (a instanceof Uint8Array) {
    return b instanceof Uint8Array && Buffer.compare(a, b) === 0;
  }
  if (a instanceof Set) {
    if (!(b instanceof Set) || a.size !== b.size) return false;
    const keys = new Set([...b].map(hashKey));
    return [...a].every((x) => keys.has(hashKey(x)));
  }
  const ea = entriesOf(a as object);
  const eb = entriesOf(b as object);
  if (!ea || !eb || ea.length !== eb.length) return false;
  const byKey = new Map(eb.map(([k, v]) => [hashKey(k), v]));
  return ea.every(([k, v]) => byKey.has(hashKey(k)) && pyEquals(v, byKey.get(hashKey(k)), seen));
}

function entriesOf(o: object): [unknown, unknown][] | undefined {
  if (o instanceof Map) return [...o];
  const proto = Object.getPrototypeOf(o);
  if (proto === Object.prototype || proto === null) return Object.entries(o);
  return undefined;
}

/** Python's ordering for `list.sort()`: numbers, strings, tuples (arrays) and bytes; mixing
 * kinds raises Python's TypeError. */
export function pyCompare(a: unknown, b: unknown): number {
  const ka = orderKind(a);
  const kb = orderKind(b);
  if (ka === undefined || kb === undefined || ka !== kb) {
    throw typeError(`'<' not supported between instances of '${pyTypeName(a)}' and '${pyTypeName(b)}'`);
  }
  switch (ka) {
    case 'number': {
      const x = a as number | bigint | boolean;
      const y = b as number | bigint | boolean;
      return x < y ? -1 : x > y ? 1 : 0;
    }
    case 'string': {
      // Code point order, as Python compares str.
      const x = a as string;
      const y = b as string;
      if (x === y) return 0;
      const xs = [...x];
      const ys = [...y];
      for (let i = 0; i < Math.min(xs.length, ys.length); i++) {
        const d = xs[i]!.codePointAt(0)! - ys[i]!.codePointAt(0)!;
        if (d !== 0) return d;
      }
      return xs.length - ys.length;
    }
    case 'bytes':
      return Buffer.compare(a as Uint8Array, b as Uint8Array);
    case 'tuple': {
      const x = a as unknown[];
      const y = b as unknown[];
      for (let i = 0; i < Math.min(x.length, y.length); i++) {
        if (!pyEquals(x[i], y[i])) return pyCompare(x[i], y[i]);
      }
      return x.length - y.length;
    }
  }
  return 0;
}

function orderKind(v: unknown): 'number' | 'string' | 'bytes' | 'tuple' | undefined {
  switch (typeof v) {
    case 'number':
    case 'bigint':
    case 'boolean':
      return 'number';
    case 'string':
      return 'string';
  }
  if (Array.isArray(v)) return 'tuple';
  if (v instanceof Uint8Array) return 'bytes';
  return undefined;
}

function reprString(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch < ' ' || ch === '\x7f') out += `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + quote;
}

function reprNumber(n: number): string {
  if (Number.isNaN(n)) return 'nan';
  if (n === Infinity) return 'inf';
  if (n === -Infinity) return '-inf';
  return String(n);
}

/** Python's `repr()` of the values the containers hold (`{1: '1', '2': 2, 0.25: None}`). */
export function pyRepr(value: unknown, seen = new Set<unknown>()): string {
  switch (typeof value) {
    case 'undefined':
      return 'None';
    case 'boolean':
      return value ? 'True' : 'False';
    case 'number':
      return reprNumber(value);
    case 'bigint':
      return String(value);
    case 'string':
      return reprString(value);
    case 'function':
      return `<function ${value.name || '<lambda>'}>`;
    case 'symbol':
      return String(value);
  }
  if (value === null) return 'None';
  const custom = (value as { [pyReprSymbol]?: () => string })[pyReprSymbol];
  if (typeof custom === 'function') return custom.call(value);
  if (seen.has(value)) return Array.isArray(value) ? '[...]' : '{...}';
  seen.add(value);
  try {
    if (Array.isArray(value)) return `[${value.map((v) => pyRepr(v, seen)).join(', ')}]`;
    if (value instanceof Uint8Array) {
      let out = "b'";
      for (const b of value) {
        if (b === 0x5c) out += '\\\\';
        else if (b === 0x27) out += "\\'";
        else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
        else out += `\\x${b.toString(16).padStart(2, '0')}`;
      }
      return `${out}'`;
    }
    if (value instanceof Map) return `{${[...value].map(([k, v]) => `${pyRepr(k, seen)}: ${pyRepr(v, seen)}`).join(', ')}}`;
    if (value instanceof Set) return value.size === 0 ? 'set()' : `{${[...value].map((v) => pyRepr(v, seen)).join(', ')}}`;
    if (value instanceof Error) return `${value.name}(${reprString(value.message)})`;
    const proto = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null) {
      return `{${Object.entries(value as object).map(([k, v]) => `${reprString(k)}: ${pyRepr(v, seen)}`).join(', ')}}`;
    }
    const own = (value as { toString?: () => string }).toString;
    if (typeof own === 'function' && own !== Object.prototype.toString) return own.call(value);
    return `<${proto?.constructor?.name ?? 'object'} object>`;
  } finally {
    seen.delete(value);
  }
}

/** Objects that know their own Python repr (the server's referents). */
export const pyReprSymbol = Symbol.for('multiprocessing-ts.pyRepr');

/** Python's iteration of a sequence through `__getitem__`: index 0, 1, ... until IndexError (a
 * list proxy's iteration, which sees changes made meanwhile). */
export async function* itemsByIndex<T>(getItem: (index: number) => Promise<T>): AsyncGenerator<T> {
  for (let i = 0; ; i++) {
    try {
      yield await getItem(i);
    } catch (error) {
      if (error instanceof IndexError) return;
      throw error;
    }
  }
}
