/**
 * Clicks per user per 10-second event-time window. A seeded generator produces click events whose timestamps mostly
 * increase, a known fraction of which arrive out of order (within the watermark's 2s bound), late (after their
 * window may have fired, but within the 5s allowed lateness: the window fires again with the updated count) or very
 * late (beyond the allowed lateness: dropped). Every firing writes one committed line
 * `user<TAB>windowStart<TAB>windowEnd<TAB>count`, so a window that fired again appears once per firing with a
 * growing count.
 *
 *   floe run examples/clicks.ts -- --output <dir> [--count N] [--rate N] [--parallelism N]
 */
import { parseArgs } from 'node:util';
import { Job, defineJob, filesSink, generator, tumblingEventTimeWindows } from '../lib/index.js';

/** One click. */
export interface Click {
  readonly user: string;
  readonly page: string;
  /** Event time, epoch milliseconds. */
  readonly ts: number;
}

/** Event time of click 0. */
export const CLICKS_START = Date.UTC(2026, 0, 1);
/** Event time between consecutive clicks' nominal timestamps. */
export const CLICK_STEP_MS = 1;
/** Distinct users (`user-00` ...). */
export const CLICK_USERS = 50;
/** Seed of the generator. */
export const CLICKS_SEED = 7;
/** Clicks the job reads unless `--count` says otherwise. */
export const DEFAULT_CLICK_COUNT = 200_000;
/** Watermark bound, window size and allowed lateness of the job. */
export const CLICK_WINDOW = { outOfOrdernessMs: 2_000, sizeMs: 10_000, allowedLatenessMs: 5_000 } as const;

/**
 * How far behind its nominal time a click is stamped, by kind; each kind is a known fraction of the clicks. A click
 * is only made very late once the stream is far enough along for it to land more than the allowed lateness behind
 * any watermark (before that it stays on time).
 */
export const CLICK_DELAYS = {
  outOfOrder: { fraction: 0.2, minMs: 1, maxMs: 1_900 },
  late: { fraction: 0.03, minMs: 2_500, maxMs: 7_000 },
  veryLate: { fraction: 0.01, minMs: 40_000, maxMs: 60_000 },
} as const;

const PAGES = ['/', '/search', '/cart', '/checkout', '/help', '/product/1', '/product/2', '/product/3'];

/** Builds click `index` from the generator's per-index random numbers (deterministic: same index and seed, same click). */
export function clickAt(index: number, random: () => number): Click {
  const user = `user-${String(Math.floor(random() * CLICK_USERS)).padStart(2, '0')}`;
  const page = PAGES[Math.floor(random() * PAGES.length)]!;
  const nominal = CLICKS_START + index * CLICK_STEP_MS;
  const roll = random();
  const spread = random();
  const { outOfOrder, late, veryLate } = CLICK_DELAYS;
  const delay = (d: { minMs: number; maxMs: number }) => d.minMs + Math.floor(spread * (d.maxMs - d.minMs));
  let ts = nominal;
  if (roll < veryLate.fraction) {
    if (index * CLICK_STEP_MS >= veryLate.maxMs) ts = nominal - delay(veryLate);
  } else if (roll < veryLate.fraction + late.fraction) ts = nominal - delay(late);
  else if (roll < veryLate.fraction + late.fraction + outOfOrder.fraction) ts = nominal - delay(outOfOrder);
  return { user, page, ts };
}

/** The line a window firing writes. */
export function clickCountLine(user: string, windowStart: number, windowEnd: number, count: number): string {
  return `${user}\t${windowStart}\t${windowEnd}\t${count}`;
}

export default defineJob((args) => {
  const { values } = parseArgs({
    args: [...args],
    options: {
      output: { type: 'string' },
      count: { type: 'string' },
      rate: { type: 'string' },
      parallelism: { type: 'string' },
    },
  });
  if (!values.output) throw new Error('clicks needs --output <dir> (and optionally --count N, --rate N, --parallelism N)');
  const count = values.count !== undefined ? Number(values.count) : DEFAULT_CLICK_COUNT;
  if (!Number.isSafeInteger(count) || count < 0) throw new Error(`--count must be a non-negative integer, got '${values.count}'`);
  const rate = values.rate !== undefined ? Number(values.rate) : undefined;
  if (rate !== undefined && !(rate > 0)) throw new Error(`--rate must be a positive number of clicks per second, got '${values.rate}'`);

  const job = new Job('clicks', {
    maxParallelism: 128,
    parallelism: values.parallelism ? Number(values.parallelism) : 2,
    checkpoint: { interval: '1s', retained: 3 },
    restart: { type: 'fixed-delay', attempts: 3, delay: '500ms' },
  });
  job
    // One source subtask reads the clicks in index order, so which clicks are too late does not depend on timing.
    .source(generator({ generate: clickAt, count, seed: CLICKS_SEED, ...(rate !== undefined ? { ratePerSecond: rate } : {}) }), {
      uid: 'clicks',
      parallelism: 1,
      watermarks: { timestamp: (c) => c.ts, outOfOrderness: `${CLICK_WINDOW.outOfOrdernessMs}ms` },
    })
    .keyBy((c) => c.user)
    .window(tumblingEventTimeWindows(`${CLICK_WINDOW.sizeMs}ms`), { allowedLateness: `${CLICK_WINDOW.allowedLatenessMs}ms` })
    .aggregate<number, number, string>(
      { createAccumulator: () => 0, add: (_click, n) => n + 1, getResult: (n) => n },
      { uid: 'clicks-per-user', name: 'Count', emit: (user, window, n) => clickCountLine(user, window.start, window.end, n) },
    )
    .sinkTo(filesSink({ dir: values.output }), { uid: 'window-counts', name: 'Files' });
  return job;
});
