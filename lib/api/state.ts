/** Declares a keyed value state; read it in a keyed function as `ctx.state.<name>`. */
export interface ValueStateDescriptor<T> {
  readonly kind: 'value';
  /** Phantom field carrying the value type. */
  readonly __type?: T;
}
/** Declares a keyed list state. */
export interface ListStateDescriptor<T> {
  readonly kind: 'list';
  readonly __type?: T;
}
/** Declares a keyed map state. */
export interface MapStateDescriptor<K extends string | number, V> {
  readonly kind: 'map';
  readonly __type?: [K, V];
}
/** Any keyed state descriptor. */
export type StateDescriptor = ValueStateDescriptor<unknown> | ListStateDescriptor<unknown> | MapStateDescriptor<string | number, unknown>;

/** A named set of keyed state descriptors. */
export type StateSpec = Record<string, StateDescriptor>;

/** Declares a `ValueState<T>`. */
export function valueState<T>(): ValueStateDescriptor<T> {
  return { kind: 'value' };
}
/** Declares a `ListState<T>`. */
export function listState<T>(): ListStateDescriptor<T> {
  return { kind: 'list' };
}
/** Declares a `MapState<K, V>`. */
export function mapState<K extends string | number, V>(): MapStateDescriptor<K, V> {
  return { kind: 'map' };
}

/** A single value per key. Values must be JSON-serializable; treat them as immutable once written. */
export interface ValueState<T> {
  value(): T | undefined;
  update(value: T): void;
  clear(): void;
}
/** A list of values per key. */
export interface ListState<T> {
  get(): readonly T[];
  add(value: T): void;
  update(values: readonly T[]): void;
  clear(): void;
}
/** A map per key. */
export interface MapState<K extends string | number, V> {
  get(key: K): V | undefined;
  put(key: K, value: V): void;
  remove(key: K): void;
  contains(key: K): boolean;
  entries(): ReadonlyArray<[K, V]>;
  keys(): readonly K[];
  isEmpty(): boolean;
  clear(): void;
}

/** The state handles a function sees for the current key, typed from its declaration. */
export type BoundState<S extends StateSpec> = {
  [N in keyof S]: S[N] extends ValueStateDescriptor<infer T>
    ? ValueState<T>
    : S[N] extends ListStateDescriptor<infer T>
      ? ListState<T>
      : S[N] extends MapStateDescriptor<infer K, infer V>
        ? MapState<K, V>
        : never;
};
