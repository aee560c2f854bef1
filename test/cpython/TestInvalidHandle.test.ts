// CPython's TestInvalidHandle (a plain TestCase; no start method involved).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';

const isValueOrOSError = (e: unknown): boolean => e instanceof mp.ValueError || e instanceof mp.OSError;

describe('TestInvalidHandle', () => {
  it('test_invalid_handles', async () => {
    // A descriptor that is not open: the constructor or poll() fails cleanly (CPython: poll).
    let conn: mp.Connection | undefined;
    try {
      conn = new mp.Connection(44977608);
      await conn.poll();
    } catch (error) {
      assert.ok(isValueOrOSError(error), String(error));
    } finally {
      conn?.close();
    }
    assert.throws(() => new mp.Connection(-1), isValueOrOSError);
  });
});
