// CPython's OtherTest (a plain TestCase; no start method involved). CPython drives the handshake
// functions with a fake connection object; ours take a Connection, so the fake is the other end of
// a Pipe that answers the same bogus things.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { answerChallenge, deliverChallenge } from '../../src/connection.js';

describe('OtherTest', () => {
  it('test_deliver_challenge_auth_failure', async () => {
    const [conn, fake] = mp.Pipe();
    try {
      const delivered = deliverChallenge(conn, Buffer.from('abc'));
      await fake.recvBytes(); // the challenge
      fake.sendBytes(Buffer.from('something bogus'));
      await assert.rejects(delivered, mp.AuthenticationError);
    } finally {
      conn.close();
      fake.close();
    }
  });

  it('test_answer_challenge_auth_failure', async () => {
    const [conn, fake] = mp.Pipe();
    try {
      const answered = answerChallenge(conn, Buffer.from('abc'));
      fake.sendBytes(Buffer.from('#CHALLENGE#'));
      fake.sendBytes(Buffer.from('something bogus'));
      await assert.rejects(answered, mp.AuthenticationError);
    } finally {
      conn.close();
      fake.close();
    }
  });
});
