// The same program from CommonJS: require() of the package (Node's require(esm)) and mp.isMain(module).
const mp = require('multiprocessing-ts');

const square = mp.task((x) => x * x);
exports.square = square;

/** Child: finds the lock held by the parent, then waits for it. */
const contend = mp.task(async (q, lock) => {
  await q.put(await lock.acquire({ timeout: 0 }));
  await lock.acquire();
  await q.put('acquired');
  lock.release();
});
exports.contend = contend;

function expect(what, got, want) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

async function main() {
  for (const method of ['spawn', 'forkserver', 'thread']) {
    const ctx = mp.getContext(method);
    const pool = new ctx.Pool(2);
    try {
      expect(`${method} Pool.map`, await pool.map(square, [1, 2, 3, 4]), [1, 4, 9, 16]);
    } finally {
      pool.terminate();
      await pool.join();
    }
    const q = new ctx.Queue();
    const lock = new ctx.Lock();
    await lock.acquire();
    const p = new ctx.Process({ target: contend, args: [q, lock] });
    p.start();
    expect(`${method} child's try while the parent holds the Lock`, await q.get({ timeout: 60 }), false);
    lock.release();
    expect(`${method} child after the release`, await q.get({ timeout: 60 }), 'acquired');
    await p.join(60);
    expect(`${method} exitcode`, p.exitcode, 0);
    q.close();
    console.log(`cjs ${method} ok`);
  }
}

if (mp.isMain(module)) {
  main().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
}
