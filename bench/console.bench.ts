/**
 * The console's table with 5,000 stores in headless Chromium: scrolling it end to end and filtering it as someone
 * types, measured in the browser (requestAnimationFrame intervals and the Performance API's long tasks). The cloud is a
 * fake that serves the built console and a 5,000-store /activity, so the figure is the page's own cost. The floor is
 * the same page's frame interval while idle, measured in the same run; the ratio is against it.
 *
 *   node --import tsx bench/console.bench.ts            5,000 stores
 *   node --import tsx bench/console.bench.ts --smoke    200 stores, a few frames (what npm test runs)
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { builtConsole, launchChromium } from '../test/support/browser.js';
import { percentile } from './stats.js';

export interface ConsoleBenchOptions {
  stores: number;
  /** Frames of scrolling; the table is crossed end to end in this many. */
  scrollFrames: number;
}

interface PhaseFigures {
  frames: number;
  p50FrameInMs: number;
  p95FrameInMs: number;
  maxFrameInMs: number;
  longTasks: number;
  longTaskTotalInMs: number;
}

export interface ConsoleBenchResult {
  bench: 'console';
  stores: number;
  domRowsWhileScrolling: number;
  idle: PhaseFigures;
  scroll: PhaseFigures & { p95RatioToIdle: number };
  filter: PhaseFigures & { keystrokes: number; p50KeystrokeToFrameInMs: number; p95KeystrokeToFrameInMs: number; p95RatioToIdle: number };
}

const STATES = ['healthy', 'healthy', 'healthy', 'tripped', 'probing', 'disabled'];

function fakeActivity(count: number) {
  const at = new Date().toISOString();
  return {
    at,
    stores: Array.from({ length: count }, (_, index) => {
      const state = STATES[index % STATES.length]!;
      return {
        storeId: `store-${String(index).padStart(5, '0')}`,
        bidirectional: state !== 'disabled',
        state,
        tags: state === 'healthy' ? ['relay'] : state === 'probing' ? ['relay', 'probe'] : [],
        reason: state === 'tripped' ? 'timeout' : null,
        lastHeardFromAt: at,
        relayLatencyInMs: state === 'disabled' ? null : 1 + (index % 17) / 3,
        backlog: index % 11,
        lastHour: { relay: index % 40, queue: index % 23, fallbacks: index % 5, failures: index % 3 },
      };
    }),
    lastHour: Array.from({ length: 60 }, (_, minute) => ({ at, relay: minute * 3, queue: minute * 2, fallbacks: minute % 4, failures: 0 })),
  };
}

/** The cloud as the console sees it, minus everything else: static files, a session, the activity, a quiet event stream. */
async function startFakeCloud(assetsDir: string, stores: number): Promise<{ server: Server; baseUrl: string }> {
  const activity = JSON.stringify(fakeActivity(stores));
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };
  const server = createServer((request, response) => {
    const url = (request.url ?? '/').split('?', 1)[0]!;
    if (url === '/session') return response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: 'bench', scopes: ['read'] }));
    if (url === '/activity') return response.writeHead(200, { 'content-type': 'application/json' }).end(activity);
    if (url === '/events') {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write(': bench\n\n');
      return;
    }
    const name = url === '/console/' ? 'index.html' : url.startsWith('/console/') ? path.basename(url) : undefined;
    if (name === undefined) return response.writeHead(404).end();
    readFile(path.join(assetsDir, name)).then(
      (body) => response.writeHead(200, { 'content-type': types[path.extname(name)] ?? 'application/octet-stream' }).end(body),
      () => response.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function figures(intervals: number[], longTasks: number[]): PhaseFigures {
  const round = (value: number) => Math.round(value * 100) / 100;
  return {
    frames: intervals.length,
    p50FrameInMs: round(percentile(intervals, 50)),
    p95FrameInMs: round(percentile(intervals, 95)),
    maxFrameInMs: round(Math.max(...intervals)),
    longTasks: longTasks.length,
    longTaskTotalInMs: round(longTasks.reduce((sum, value) => sum + value, 0)),
  };
}

/** In the page: records frame intervals and long tasks while `work` runs, frame by frame. */
const MEASURE = `
window.__measure = async (kind, frames) => {
  const intervals = [];
  const longTasks = [];
  const observer = new PerformanceObserver((list) => { for (const entry of list.getEntries()) longTasks.push(entry.duration); });
  observer.observe({ type: 'longtask', buffered: false });
  const body = document.getElementById('store-rows');
  const filter = document.getElementById('store-filter');
  const step = Math.max(1, (body.scrollHeight - body.clientHeight) / frames);
  const query = 'store-0123';
  const keystrokes = [];
  let domRows = 0;
  let last = await new Promise(requestAnimationFrame);
  for (let frame = 0; frame < frames; frame += 1) {
    let typedAt;
    if (kind === 'scroll') body.scrollTop = Math.min(body.scrollHeight, (frame + 1) * step);
    if (kind === 'filter') {
      filter.value = frame % (query.length + 1) === query.length ? '' : query.slice(0, (frame % (query.length + 1)) + 1);
      typedAt = performance.now();
      filter.dispatchEvent(new Event('input'));
    }
    const now = await new Promise(requestAnimationFrame);
    intervals.push(now - last);
    if (typedAt !== undefined) keystrokes.push(performance.now() - typedAt);
    domRows = Math.max(domRows, body.querySelectorAll('.grid-row').length);
    last = now;
  }
  // Long tasks are reported after they end: one more frame lets the observer deliver them.
  await new Promise(requestAnimationFrame);
  observer.disconnect();
  filter.value = '';
  filter.dispatchEvent(new Event('input'));
  return { intervals, longTasks, keystrokes, domRows };
};
`;

export async function runConsoleBench(options: ConsoleBenchOptions): Promise<ConsoleBenchResult> {
  const built = await builtConsole();
  const { server, baseUrl } = await startFakeCloud(built.assetsDir, options.stores);
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`${baseUrl}/console/`);
    await page.fill('#api-key', 'bench.key');
    await page.click('#sign-in button[type=submit]');
    await page.waitForSelector(`#store-count:has-text("${options.stores} of ${options.stores} stores")`);
    await page.evaluate(MEASURE);
    type Measured = { intervals: number[]; longTasks: number[]; keystrokes: number[]; domRows: number };
    const measure = (kind: string, frames: number) => page.evaluate<Measured>(`window.__measure(${JSON.stringify(kind)}, ${frames})`);
    const idle = await measure('idle', Math.max(30, Math.round(options.scrollFrames / 2)));
    const scroll = await measure('scroll', options.scrollFrames);
    const filter = await measure('filter', Math.max(22, Math.round(options.scrollFrames / 2)));
    const idleFigures = figures(idle.intervals, idle.longTasks);
    const scrollFigures = figures(scroll.intervals, scroll.longTasks);
    const filterFigures = figures(filter.intervals, filter.longTasks);
    const ratio = (value: number) => Math.round((value / idleFigures.p95FrameInMs) * 100) / 100;
    return {
      bench: 'console',
      stores: options.stores,
      domRowsWhileScrolling: scroll.domRows,
      idle: idleFigures,
      scroll: { ...scrollFigures, p95RatioToIdle: ratio(scrollFigures.p95FrameInMs) },
      filter: {
        ...filterFigures,
        keystrokes: filter.keystrokes.length,
        p50KeystrokeToFrameInMs: Math.round(percentile(filter.keystrokes, 50) * 100) / 100,
        p95KeystrokeToFrameInMs: Math.round(percentile(filter.keystrokes, 95) * 100) / 100,
        p95RatioToIdle: ratio(filterFigures.p95FrameInMs),
      },
    };
  } finally {
    await browser.close();
    await new Promise((resolve) => server.close(resolve));
    await built.remove();
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const smoke = process.argv.includes('--smoke');
  const result = await runConsoleBench(smoke ? { stores: 200, scrollFrames: 30 } : { stores: 5_000, scrollFrames: 600 });
  console.log(`console: ${result.stores} stores in the table, at most ${result.domRowsWhileScrolling} rows in the DOM while scrolling (headless Chromium)`);
  console.log('| phase | frames | p50 frame (ms) | p95 frame (ms) | max frame (ms) | p95 / idle p95 | long tasks (total ms) |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const [phase, row] of [['idle', { ...result.idle, p95RatioToIdle: 1 }], ['scroll end to end', result.scroll], ['filter while typing', result.filter]] as const) {
    console.log(`| ${phase} | ${row.frames} | ${row.p50FrameInMs} | ${row.p95FrameInMs} | ${row.maxFrameInMs} | ${row.p95RatioToIdle} | ${row.longTasks} (${row.longTaskTotalInMs}) |`);
  }
  console.log(`filter: keystroke to next frame p50 ${result.filter.p50KeystrokeToFrameInMs} ms, p95 ${result.filter.p95KeystrokeToFrameInMs} ms over ${result.filter.keystrokes} keystrokes`);
  console.log(`BENCH_JSON ${JSON.stringify(result)}`);
}
