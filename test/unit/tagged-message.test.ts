import { describe, expect, it } from 'vitest';
import { encodeWake, parseWake } from '../../lib/hosts/lambda/source-wakes.js';
import { encodeTimerWake, parseTimerWake } from '../../lib/hosts/lambda/timer-wakes.js';
import { FloeError } from '../../lib/core/errors.js';

describe('wake messages on a vertex queue', () => {
  it('read back what they encode, and leave other bodies (an envelope, the other kind of wake) alone', () => {
    expect(parseWake(encodeWake({ gen: 2, subtask: 1, n: 7, idle: 12 }))).toEqual({ floe: 'wake', gen: 2, subtask: 1, n: 7, idle: 12 });
    expect(parseWake(encodeWake({ gen: 2, subtask: 1, n: 7 }))).toEqual({ floe: 'wake', gen: 2, subtask: 1, n: 7 });
    expect(parseTimerWake(encodeTimerWake({ gen: 3, subtask: 0, due: 1_000_400, id: 4 }))).toEqual({ floe: 'timer', gen: 3, subtask: 0, due: 1_000_400, id: 4 });
    expect(parseWake(encodeTimerWake({ gen: 3, subtask: 0, due: 1, id: 4 }))).toBeUndefined();
    expect(parseTimerWake(encodeWake({ gen: 2, subtask: 1, n: 7 }))).toBeUndefined();
    expect(parseWake('{"v":1,"kind":"data","records":[{"v":"wake"}]}')).toBeUndefined();
    expect(parseWake('not json "wake"')).toBeUndefined();
  });

  it('refuse a tagged body whose fields do not fit, naming each one', () => {
    const bad = () => parseWake('{"floe":"wake","gen":-1,"subtask":"0","n":1.5}');
    expect(bad).toThrow(FloeError);
    expect(bad).toThrow(/wake message needs non-negative integer fields \(gen: .*; subtask: .*; n: .*\)/);
    expect(() => parseTimerWake('{"floe":"timer","gen":1,"subtask":0,"due":5}')).toThrow(/timer wake .*id: /);
  });
});
