import type { CoordinatorEffect, CoordinatorState, CoordinatorStep } from './types.js';

/** A step that changes nothing and asks for nothing. */
export function unchanged(state: CoordinatorState, result?: CoordinatorStep['result']): CoordinatorStep {
  return result === undefined ? { state, effects: [] } : { state, effects: [], result };
}

/** A step to `state` with `effects`. */
export function step(state: CoordinatorState, effects: readonly CoordinatorEffect[] = [], result?: CoordinatorStep['result']): CoordinatorStep {
  return result === undefined ? { state, effects } : { state, effects, result };
}

/** Runs `next` on the state `first` left, concatenating effects; the first defined result wins. */
export function andThen(first: CoordinatorStep, next: (state: CoordinatorState) => CoordinatorStep): CoordinatorStep {
  const second = next(first.state);
  return step(second.state, [...first.effects, ...second.effects], first.result ?? second.result);
}
