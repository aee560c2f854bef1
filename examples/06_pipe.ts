// Exchanging objects between processes through a Pipe (two connected Connections).
import * as mp from 'multiprocessing-ts';
import { format } from './pyformat.js';

export const worker = mp.task((conn: mp.Connection) => {
  conn.send([42, null, 'hello']);
  conn.close();
});

if (mp.isMain(import.meta)) {
  const [parentConn, childConn] = mp.Pipe();
  const p = new mp.Process({ target: worker, args: [childConn] });
  p.start();
  console.log(format(await parentConn.recv()));
  await p.join();
}
