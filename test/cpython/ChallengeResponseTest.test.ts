// CPython's ChallengeResponseTest (a plain TestCase; no start method involved): the private
// _create_response/_verify_challenge, which are createResponse/verifyChallenge here.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { createResponse, verifyChallenge } from '../../src/connectionFraming.js';

describe('ChallengeResponseTest', () => {
  const authkey = Buffer.from('supadupasecretkey');

  it('test_challengeresponse', () => {
    for (const algo of [null, 'md5', 'sha256']) {
      const prefix = Buffer.from(algo ? `{${algo}}` : '', 'ascii');
      const msg = Buffer.concat([prefix, Buffer.from('is-twenty-bytes-long')]); // a legacy message's length
      const response = createResponse(authkey, msg);
      assert.ok(response.subarray(0, prefix.length).equals(prefix), `${algo}: ${response.toString('hex')}`);
      verifyChallenge(authkey, msg, response);
      // And a response that does not answer this message is refused.
      const wrong = Buffer.from(response);
      wrong[wrong.length - 1]! ^= 1;
      assert.throws(() => verifyChallenge(authkey, msg, wrong), mp.AuthenticationError);
    }
  });
});
