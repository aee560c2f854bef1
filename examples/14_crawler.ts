// A real job shaped like a crawler: worker Processes take URLs from a JoinableQueue, fetch and parse
// the page, and send back what they found; the coordinator queues each new link once, knows the
// crawl is over when every queued URL has been answered, checks with `tasks.join()` that every task
// was marked done, and stops the workers with one `null` each. The site is a small one served by
// this program on localhost, so the example runs anywhere and its output is known.
//
//   node --import tsx examples/14_crawler.ts
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import * as mp from 'multiprocessing-ts';

interface Page {
  url: string;
  status: number;
  title: string;
  links: string[];
}

const WORKERS = 3;

/** Runs in each worker process until it gets `null`. */
export const crawlWorker = mp.task(async (tasks: mp.JoinableQueue<string | null>, results: mp.Queue<Page>) => {
  for (;;) {
    const url = await tasks.get();
    try {
      if (url === null) return;
      const response = await fetch(url);
      const html = await response.text();
      const title = /<title>(.*?)<\/title>/.exec(html)?.[1] ?? '';
      const links = [...html.matchAll(/href="([^"]+)"/g)].map((m) => new URL(m[1]!, url).href);
      await results.put({ url, status: response.status, title, links });
    } finally {
      tasks.taskDone();
    }
  }
});

/** 30 pages; page i links to two others, and page 5 to one that does not exist. */
function serveSite(): Server {
  const pages = 30;
  return createServer((request, response) => {
    const n = Number(/^\/page\/(\d+)$/.exec(request.url ?? '')?.[1] ?? -1);
    if (!(n >= 0 && n < pages)) {
      response.writeHead(404).end('<title>Not found</title>');
      return;
    }
    const links = [(n * 3 + 1) % pages, (n * 7 + 2) % pages].map((m) => `<a href="/page/${m}">page ${m}</a>`);
    if (n === 5) links.push('<a href="/page/999">broken</a>');
    response.writeHead(200, { 'content-type': 'text/html' }).end(`<title>Page ${n}</title>${links.join(' ')}`);
  });
}

if (mp.isMain(import.meta)) {
  const server = serveSite().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const tasks = new mp.JoinableQueue<string | null>();
  const results = new mp.Queue<Page>();
  const workers = Array.from({ length: WORKERS }, () => new mp.Process({ target: crawlWorker, args: [tasks, results] }));
  for (const w of workers) w.start();

  const start = `${origin}/page/0`;
  const seen = new Set([start]);
  await tasks.put(start);
  let pending = 1;
  const found: Page[] = [];
  while (pending > 0) {
    const page = await results.get({ timeout: 60 });
    pending--;
    found.push(page);
    for (const link of page.status === 200 ? page.links : []) {
      if (seen.has(link)) continue;
      seen.add(link);
      pending++;
      await tasks.put(link);
    }
  }
  await tasks.join(); // every URL handed out was marked done
  for (const _ of workers) await tasks.put(null);
  for (const w of workers) await w.join(30);
  server.close();

  const path = (url: string) => new URL(url).pathname;
  const number = (url: string) => Number(path(url).split('/').pop());
  for (const page of found.sort((a, b) => number(a.url) - number(b.url))) {
    console.log(`${page.status} ${path(page.url)} ${JSON.stringify(page.title)} -> ${page.links.map(path).join(' ') || '-'}`);
  }
  console.log(`${found.length} pages crawled by ${WORKERS} workers, exit codes ${workers.map((w) => w.exitcode).join(' ')}`);
  tasks.close();
  results.close();
}
