// CPython's TestInvalidFamily (a plain TestCase; no start method involved).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';

describe('TestInvalidFamily', () => {
  it('test_invalid_family', () => {
    // A Windows named-pipe address on POSIX.
    assert.throws(() => new mp.Listener('\\\\.\\test'), mp.ValueError);
  });

  it('test_invalid_family_win32', { skip: 'n/a: Windows only (a POSIX path given to a Windows Listener)' }, () => {});
});
