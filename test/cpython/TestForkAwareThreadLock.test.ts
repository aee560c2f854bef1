// CPython's TestForkAwareThreadLock (a plain TestCase).
import { describe, it } from 'node:test';

describe('TestForkAwareThreadLock', () => {
  it('test_lock', {
    skip: "n/a: checks that CPython's after-fork registry (util._afterfork_registry) does not grow in nested children; nothing here forks or keeps such a registry",
  }, () => {});
});
