import type { Clock } from '../../ports/index.js';

/** The machine's wall clock: the Clock every host uses unless a test gives it another. */
export const systemClock: Clock = { now: () => Date.now() };
