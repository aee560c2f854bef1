// CPython's _TestLogging (ALLOWED_TYPES: processes): a quick check that logging works.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { cpythonClass, reap } from './harness.js';
import { sendLoggingLevel } from './fixtures/process.js';

cpythonClass('_TestLogging', ['processes'], (f) => {
  it('test_enable_logging', () => {
    const logger = f.ctx.getLogger();
    const saved = logger.level;
    const records: mp.LogRecord[] = [];
    const handler = (r: mp.LogRecord) => records.push(r);
    logger.addHandler(handler);
    try {
      logger.setLevel('subwarning');
      assert.ok(logger);
      logger.debug('this will not be printed');
      logger.info('nor will this');
      assert.deepEqual(records, []);
    } finally {
      logger.removeHandler(handler);
      logger.setLevel(saved);
    }
  });

  it('test_level', async () => {
    // The child's logger has the parent's level. (CPython also checks the root logger's level
    // when the multiprocessing logger has none: there is no logger hierarchy here.)
    const LEVEL1 = 32;
    const logger = f.ctx.getLogger();
    const saved = logger.level;
    const [reader, writer] = f.ctx.Pipe(false);
    const p = new f.ctx.Process({ target: sendLoggingLevel, args: [writer] });
    try {
      logger.setLevel(LEVEL1);
      p.start();
      assert.equal(await reader.recv(), LEVEL1);
      await p.join();
      p.close();
    } finally {
      logger.setLevel(saved);
      reader.close();
      writer.close();
      await reap(p);
    }
  });

  it('test_filename', {
    skip: "n/a: CPython's records carry the caller's file name (%(filename)s); a LogRecord here has level, process name and message only",
  }, () => {});
});
