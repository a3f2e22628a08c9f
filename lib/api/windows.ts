import { parseDuration } from '../core/duration.js';

/** An event-time window `[start, end)`. */
export interface TimeWindow {
  readonly start: number;
  readonly end: number;
}

/** How elements are assigned to event-time windows. */
export interface WindowAssigner {
  readonly kind: 'tumbling' | 'sliding';
  readonly size: number;
  readonly slide: number;
  readonly offset: number;
}

/** Event-time tumbling windows of `size` (Flink's TumblingEventTimeWindows). */
export function tumblingEventTimeWindows(size: string | number, offset: string | number = 0): WindowAssigner {
  const s = parseDuration(size, 'window size');
  return { kind: 'tumbling', size: s, slide: s, offset: parseDuration(offset, 'window offset') };
}

/** Event-time sliding windows of `size` every `slide` (Flink's SlidingEventTimeWindows). */
export function slidingEventTimeWindows(size: string | number, slide: string | number, offset: string | number = 0): WindowAssigner {
  return { kind: 'sliding', size: parseDuration(size, 'window size'), slide: parseDuration(slide, 'window slide'), offset: parseDuration(offset, 'window offset') };
}

/** The windows an element with `timestamp` belongs to, earliest first. */
export function assignWindows(assigner: WindowAssigner, timestamp: number): TimeWindow[] {
  const { size, slide, offset } = assigner;
  const lastStart = timestamp - ((((timestamp - offset) % slide) + slide) % slide);
  const windows: TimeWindow[] = [];
  for (let start = lastStart; start > timestamp - size; start -= slide) windows.push({ start, end: start + size });
  return windows.reverse();
}
