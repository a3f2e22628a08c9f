import { describe, expect, it } from 'vitest';
import { assignWindows, slidingEventTimeWindows, tumblingEventTimeWindows, type TimeWindow, type WindowAssigner } from '../../lib/api/windows.js';
import { FloeError } from '../../lib/core/errors.js';

const w = (start: number, end: number): TimeWindow => ({ start, end });

describe('assignWindows: tumbling', () => {
  const tumbling10 = tumblingEventTimeWindows(10);

  it.each<[number, TimeWindow]>([
    [0, w(0, 10)],
    [9, w(0, 10)],
    [10, w(10, 20)],
    [15, w(10, 20)],
    [-1, w(-10, 0)],
    [-10, w(-10, 0)],
    [-11, w(-20, -10)],
    [1_700_000_000_005, w(1_700_000_000_000, 1_700_000_000_010)],
  ])('puts timestamp %i in %j', (timestamp, expected) => {
    expect(assignWindows(tumbling10, timestamp)).toEqual([expected]);
  });

  it.each<[number, TimeWindow]>([
    [2, w(-7, 3)],
    [3, w(3, 13)],
    [12, w(3, 13)],
    [13, w(13, 23)],
    [-8, w(-17, -7)],
  ])('with offset 3 puts timestamp %i in %j', (timestamp, expected) => {
    expect(assignWindows(tumblingEventTimeWindows(10, 3), timestamp)).toEqual([expected]);
  });

  it('takes durations as text: an hourly window offset by 15 minutes', () => {
    const hourly = tumblingEventTimeWindows('1h', '15m');
    expect(hourly).toEqual({ kind: 'tumbling', size: 3_600_000, slide: 3_600_000, offset: 900_000 });
    expect(assignWindows(hourly, 3_600_000)).toEqual([w(900_000, 4_500_000)]);
  });

  it('rejects a size that is not a duration, naming the field', () => {
    expect(() => tumblingEventTimeWindows('ten')).toThrow(FloeError);
    expect(() => tumblingEventTimeWindows('ten')).toThrow(/window size/);
  });
});

describe('assignWindows: sliding', () => {
  it.each<[string, WindowAssigner, number, TimeWindow[]]>([
    ['size 10 slide 5 at 7', slidingEventTimeWindows(10, 5), 7, [w(0, 10), w(5, 15)]],
    ['size 10 slide 5 at 5 (on a boundary)', slidingEventTimeWindows(10, 5), 5, [w(0, 10), w(5, 15)]],
    ['size 10 slide 5 at -3', slidingEventTimeWindows(10, 5), -3, [w(-10, 0), w(-5, 5)]],
    ['size 10 slide 3 at 7 (slide not dividing size)', slidingEventTimeWindows(10, 3), 7, [w(0, 10), w(3, 13), w(6, 16)]],
    ['size 10 slide 5 offset 2 at 7', slidingEventTimeWindows(10, 5, 2), 7, [w(2, 12), w(7, 17)]],
    ['size 5 slide 10 at 7 (a gap between windows)', slidingEventTimeWindows(5, 10), 7, []],
    ['size 5 slide 10 at 3', slidingEventTimeWindows(5, 10), 3, [w(0, 5)]],
  ])('%s', (_case, assigner, timestamp, expected) => {
    expect(assignWindows(assigner, timestamp)).toEqual(expected);
  });

  it.each([-1_001, -17, -1, 0, 1, 17, 999, 1_000_003])('puts timestamp %i in every window of size 60 slide 15 that contains it, earliest first', (timestamp) => {
    const windows = assignWindows(slidingEventTimeWindows(60, 15, 4), timestamp);
    expect(windows).toHaveLength(4);
    for (const x of windows) {
      expect(x.start <= timestamp && timestamp < x.end).toBe(true);
      expect(x.end - x.start).toBe(60);
      expect((((x.start - 4) % 15) + 15) % 15).toBe(0);
    }
    expect(windows.map((x) => x.start)).toEqual([...windows.map((x) => x.start)].sort((a, b) => a - b));
  });
});
