// CPython's _TestContainers (ALLOWED_TYPES: manager): a manager's list, dict, Namespace, and
// proxies nested in them. Python's operators and slices map onto ListProxy's methods
// (`a[:]` -> `slice()`, `b *= 2` -> `imul(2)`, `b + x` -> `add(x)`, `d[k] = v` -> `setItem(k, v)`).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { BaseProxy, type DictProxy, type ListProxy, type SyncManager } from '../../src/managers.js';
import { cpythonClass, forceGc } from './harness.js';

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const chr = (i: number) => String.fromCharCode(i);

async function collect<T>(it: AsyncIterator<T>): Promise<T[]> {
  const out: T[] = [];
  for (let r = await it.next(); !r.done; r = await it.next()) out.push(r.value);
  return out;
}

cpythonClass('_TestContainers', ['manager'], (f) => {
  const manager = (): SyncManager => f.manager!;

  it('test_list', async () => {
    const a = await manager().list(range(10));
    assert.deepEqual(await a.slice(), range(10));

    const b = await manager().list<number>();
    assert.deepEqual(await b.slice(), []);
    await b.extend(range(5));
    assert.deepEqual(await b.slice(), range(5));
    assert.equal(await b.getItem(2), 2);
    assert.deepEqual(await b.slice(2, 10), [2, 3, 4]);
    await b.imul(2);
    assert.deepEqual(await b.slice(), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    assert.deepEqual(await b.add([5, 6]), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]);
    assert.deepEqual(await a.slice(), range(10));

    // A list of proxies: each element reads back as a proxy to the same list.
    const e = await manager().list<ListProxy<number>>([a, b]);
    const elements: number[][] = [];
    for await (const element of e) elements.push(await element.slice());
    assert.deepEqual(elements, [range(10), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]]);

    const f_ = await manager().list<ListProxy<unknown>>([a as ListProxy<unknown>]);
    await (a as ListProxy<unknown>).append('hello');
    assert.deepEqual(await (await f_.getItem(0)).slice(), [...range(10), 'hello']);
  });

  it('test_list_iter', async () => {
    const a = await manager().list(range(10));
    let it = a[Symbol.asyncIterator]();
    assert.deepEqual(await collect(it), range(10));
    assert.deepEqual(await collect(it), [], 'exhausted');
    // The list modified during iteration: the iterator reads it live.
    it = a[Symbol.asyncIterator]();
    await a.setItem(0, 100);
    assert.deepEqual(await it.next(), { value: 100, done: false });
  });

  it('test_list_proxy_in_list', async () => {
    const inner = await Promise.all(range(3).map(() => manager().list(range(3))));
    let a: ListProxy<ListProxy<number>> | null = await manager().list(inner);
    const slices: number[][] = [];
    for await (const x of a) slices.push(await x.slice());
    assert.deepEqual(slices, [[0, 1, 2], [0, 1, 2], [0, 1, 2]]);

    await (await a.getItem(0)).setItem(-1, 55);
    assert.deepEqual(await (await a.getItem(0)).slice(), [0, 1, 55]);
    for (const i of [1, 2]) assert.deepEqual(await (await a.getItem(i)).slice(), [0, 1, 2]);

    assert.equal(await (await a.getItem(1)).pop(), 2);
    assert.equal(await (await a.getItem(1)).len(), 2);
    for (const i of [0, 2]) assert.equal(await (await a.getItem(i)).len(), 3);
    a = null;

    // A list that contains itself does not break the server.
    let b: ListProxy<unknown> | null = await manager().list();
    await b.append(b);
    assert.equal(await b.len(), 1);
    b = null;
    await forceGc();
  });

  it('test_dict', async () => {
    const d = await manager().dict<number, string>();
    const indices = range(5).map((i) => 65 + i);
    for (const i of indices) await d.setItem(i, chr(i));
    assert.deepEqual(await d.copy(), new Map(indices.map((i) => [i, chr(i)])));
    assert.deepEqual((await d.keys()).sort(), indices);
    assert.deepEqual((await d.values()).sort(), indices.map(chr));
    assert.deepEqual((await d.items()).sort(), indices.map((i) => [i, chr(i)]));
  });

  it('test_dict_iter', async () => {
    const d = await manager().dict<number, string>();
    const indices = range(5).map((i) => 65 + i);
    for (const i of indices) await d.setItem(i, chr(i));
    let it = await d.iter();
    assert.deepEqual(await collect(it), indices);
    assert.deepEqual(await collect(it), [], 'exhausted');
    // The dictionary changed size during iteration.
    it = await d.iter();
    await d.clear();
    await assert.rejects(it.next(), (e: Error) => e instanceof mp.RuntimeError && /changed size during iteration/.test(e.message));
  });

  it('test_dict_proxy_nested', async () => {
    type Inner = DictProxy<string, number>;
    let pets: Inner | null = await manager().dict<string, number>({ ferrets: 2, hamsters: 4 });
    let supplies: Inner | null = await manager().dict<string, number>({ water: 10, feed: 3 });
    const d = await manager().dict<string, Inner>({ pets, supplies });

    assert.equal(await supplies.getItem('water'), 10);
    assert.equal(await (await d.getItem('supplies')).getItem('water'), 10);

    await (await d.getItem('supplies')).setItem('blankets', 5);
    assert.equal(await supplies.getItem('blankets'), 5);
    assert.equal(await (await d.getItem('supplies')).getItem('blankets'), 5);

    await (await d.getItem('supplies')).setItem('water', 7);
    assert.equal(await supplies.getItem('water'), 7);
    assert.equal(await (await d.getItem('supplies')).getItem('water'), 7);

    // Python's `del pets; del supplies`: the client's proxies go; the nested ones keep the objects.
    pets = null;
    supplies = null;
    await forceGc();
    assert.equal(await (await d.getItem('pets')).getItem('ferrets'), 2);
    await (await d.getItem('supplies')).setItem('blankets', 11);
    assert.equal(await (await d.getItem('supplies')).getItem('blankets'), 11);

    pets = await d.getItem('pets');
    supplies = await d.getItem('supplies');
    await supplies.setItem('water', 7);
    assert.equal(await supplies.getItem('water'), 7);
    assert.equal(await (await d.getItem('supplies')).getItem('water'), 7);

    await d.clear();
    assert.equal(await d.len(), 0);
    assert.equal(await supplies.getItem('water'), 7);
    assert.equal(await pets.getItem('hamsters'), 4);

    const l = await manager().list<Inner>([pets, supplies]);
    await (await l.getItem(0)).setItem('marmots', 1);
    assert.equal(await pets.getItem('marmots'), 1);
    assert.equal(await (await l.getItem(0)).getItem('marmots'), 1);

    pets = null;
    supplies = null;
    await forceGc();
    assert.equal(await (await l.getItem(0)).getItem('marmots'), 1);

    const outer = await manager().list<unknown>([[88, 99], l]);
    const first = await outer.getItem(0);
    assert.ok(Array.isArray(first) && !(first instanceof BaseProxy), 'a plain list stays a list, not a ListProxy');
    const last = (await outer.getItem(-1)) as ListProxy<Inner>;
    assert.equal(await (await last.getItem(-1)).getItem('feed'), 3);
  });

  it('test_nested_queue', async () => {
    const a = await manager().list<Awaited<ReturnType<SyncManager['Queue']>>>();
    await a.append(await manager().Queue());
    await (await a.getItem(0)).put(123);
    assert.equal(await (await a.getItem(0)).get(), 123);
    const b = await manager().dict<number, Awaited<ReturnType<SyncManager['Queue']>>>();
    await b.setItem(0, await manager().Queue());
    await (await b.getItem(0)).put(456);
    assert.equal(await (await b.getItem(0)).get(), 456);
  });

  it('test_namespace', async () => {
    const n = await manager().Namespace<{ name: string; job: string; _hidden: string }>();
    await n.set('name', 'Bob');
    await n.set('job', 'Builder');
    await n.set('_hidden', 'hidden');
    assert.deepEqual([await n.get('name'), await n.get('job')], ['Bob', 'Builder']);
    await n.delete('job');
    assert.equal(await n.str(), "Namespace(name='Bob')");
    assert.equal(await n.has('name'), true);
    assert.equal(await n.has('job'), false);
  });

  // Python 3.14: ListProxy and DictProxy register as MutableSequence and MutableMapping. Ours
  // has each of their methods under its JavaScript name (no `__reversed__`, `__eq__`, `__ne__`).
  it('test_list_isinstance', async () => {
    const a = await manager().list();
    for (const name of ['has', 'delItem', 'getItem', 'extend', 'len', 'setItem', 'append', 'clear', 'count', 'extend', 'index', 'insert', 'pop', 'remove', 'reverse']) {
      assert.equal(typeof (a as unknown as Record<string, unknown>)[name], 'function', name);
    }
  });

  it('test_dict_isinstance', async () => {
    const d = await manager().dict();
    for (const name of ['has', 'delItem', 'getItem', 'iter', 'len', 'setItem', 'clear', 'get', 'items', 'keys', 'pop', 'popitem', 'setdefault', 'update', 'values']) {
      assert.equal(typeof (d as unknown as Record<string, unknown>)[name], 'function', name);
    }
    assert.equal(typeof d[Symbol.asyncIterator], 'function');
  });
});
