import { describe, expect, it } from 'vitest';
import { Job, type DataStream } from '../../lib/api/job.js';
import { valueState } from '../../lib/api/state.js';
import type { SinkConnector } from '../../lib/api/connector.js';
import { generator } from '../../lib/connectors/generator.js';
import { collectSink } from '../../lib/connectors/collect-sink.js';
import { buildPlan, inputChannels, vertexById, type PhysicalPlan } from '../../lib/graph/plan.js';
import { validateJob } from '../../lib/graph/validate.js';
import { ErrorCode, ValidationError } from '../../lib/core/errors.js';

// Fixtures: a job with a numbers source; tests add the operators they are about.

const sink = (): SinkConnector<unknown> => collectSink<unknown>('graph-test');

function aJob(options: { maxParallelism?: number; parallelism?: number } = {}): { job: Job; numbers: DataStream<number> } {
  const job = new Job('graph', options);
  const numbers = job.source(generator({ count: 10, generate: (i) => i }), { uid: 'numbers' });
  return { job, numbers };
}

function problemsOf(job: Job, overrides: { parallelism?: number } = {}): readonly string[] {
  try {
    validateJob(job, overrides);
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    expect((e as ValidationError).code).toBe(ErrorCode.InvalidJob);
    return (e as ValidationError).problems;
  }
  return [];
}

const shape = (plan: PhysicalPlan) => plan.vertices.map((v) => ({ id: v.id, ops: v.operators.map((o) => o.uid), p: v.parallelism }));
const edges = (plan: PhysicalPlan) => plan.vertices.flatMap((v) => v.outputs.map((e) => `${e.from} -${e.partitioning}-> ${e.to}`));

describe('validateJob', () => {
  it('reports every problem of a job in one ValidationError', () => {
    // Given a job with a duplicate uid, a stateful operator without uid, keyed state without keyBy and a parallelism above maxParallelism
    const { job, numbers } = aJob({ maxParallelism: 4 });
    numbers
      .map((n) => n + 1, { uid: 'numbers' })
      .process<number>({ state: { seen: valueState<boolean>() }, processElement: () => {} })
      .keyBy((n) => n)
      .reduce((a, b) => a + b, { uid: 'sum', parallelism: 8 })
      .sinkTo(sink(), { uid: 'out' });

    // When it is validated
    const problems = problemsOf(job);

    // Then each problem is listed, naming the operator
    expect(problems).toHaveLength(4);
    expect(problems).toEqual([
      expect.stringContaining("duplicate uid 'numbers'"),
      expect.stringMatching(/operator 'Process' \(#2\) keeps state but has no uid/),
      expect.stringMatching(/operator 'Process' \(#2\) uses keyed state \(seen\) but its input is not keyed/),
      expect.stringMatching(/operator 'sum' .*parallelism 8 is above maxParallelism 4/),
    ]);
    expect(() => buildPlan(job)).toThrow(ValidationError);
  });

  it.each<[string, (d: ReturnType<typeof aJob>) => void, RegExp]>([
    ['timers after rebalance instead of keyBy', ({ numbers }) => numbers.rebalance().process({ processElement: () => {}, onTimer: () => {} }).sinkTo(sink(), { uid: 'out' }), /uses timers but its input is not keyed/],
    ['a stateful sink without uid', ({ numbers }) => numbers.sinkTo(sink()), /'Sink: collect' \(#1\) keeps state but has no uid/],
    ['an operator whose output goes nowhere', ({ numbers }) => numbers.map((n) => n), /'Map' \(#1\) has no downstream operator/],
    ['a uid with a space', ({ numbers }) => numbers.sinkTo(sink(), { uid: 'my sink' }), /operator 'my sink' .*uid must start with a letter or digit/],
    ['a zero parallelism', ({ numbers }) => numbers.sinkTo(sink(), { uid: 'out', parallelism: 0 }), /operator 'out' .*parallelism must be a positive integer, got 0/],
  ])('reports %s', (_case, build, expected) => {
    const d = aJob();
    build(d);
    expect(problemsOf(d.job)).toEqual([expect.stringMatching(expected)]);
  });

  it.each([
    [{ maxParallelism: 0 }, /maxParallelism must be an integer from 1 to 32768, got 0/],
    [{ maxParallelism: 40_000 }, /maxParallelism must be an integer from 1 to 32768/],
    [{ parallelism: 1.5 }, /parallelism must be a positive integer, got 1.5/],
  ])('reports job option %j', (options, expected) => {
    const { job, numbers } = aJob(options);
    numbers.sinkTo(sink(), { uid: 'out' });
    expect(problemsOf(job)).toContainEqual(expect.stringMatching(expected));
  });

  it('reports a job without a source and a bad job name together', () => {
    expect(problemsOf(new Job('no source!'))).toEqual([expect.stringContaining("job name 'no source!'"), 'the job has no source']);
  });

  it('checks the default parallelism given at run time against maxParallelism', () => {
    const { job, numbers } = aJob({ maxParallelism: 4 });
    numbers.sinkTo(sink(), { uid: 'out' });
    expect(problemsOf(job)).toEqual([]);
    expect(problemsOf(job, { parallelism: 5 })).toHaveLength(2);
  });

  it('accepts a valid job', () => {
    const { job, numbers } = aJob();
    numbers.keyBy((n) => n % 2).reduce((a, b) => a + b, { uid: 'sum' }).sinkTo(sink(), { uid: 'out' });
    expect(problemsOf(job)).toEqual([]);
  });
});

describe('buildPlan: chaining', () => {
  it('chains forward operators of equal parallelism and breaks the chain at keyBy', () => {
    const { job, numbers } = aJob({ parallelism: 2 });
    numbers
      .map((n) => n * 2)
      .filter((n) => n > 2)
      .keyBy((n) => n % 3)
      .reduce((a, b) => a + b, { uid: 'sum' })
      .map((n) => `${n}`)
      .sinkTo(sink(), { uid: 'out' });

    const plan = buildPlan(job);

    expect(shape(plan)).toEqual([
      { id: 'numbers', ops: ['numbers', 'map-1', 'filter-2'], p: 2 },
      { id: 'sum', ops: ['sum', 'map-4', 'out'], p: 2 },
    ]);
    expect(edges(plan)).toEqual(['numbers -hash-> sum']);
    expect(vertexById(plan, 'numbers')).toMatchObject({ isSource: true, isSink: false });
    expect(vertexById(plan, 'sum')).toMatchObject({ isSource: false, isSink: true });
  });

  it('turns a forward edge into rebalance where parallelism changes', () => {
    const { job, numbers } = aJob({ parallelism: 2 });
    numbers.map((n) => n, { uid: 'wide', parallelism: 3 }).sinkTo(sink(), { uid: 'out', parallelism: 3 });

    const plan = buildPlan(job);

    expect(shape(plan)).toEqual([
      { id: 'numbers', ops: ['numbers'], p: 2 },
      { id: 'wide', ops: ['wide', 'out'], p: 3 },
    ]);
    expect(edges(plan)).toEqual(['numbers -rebalance-> wide']);
  });

  it('does not chain across an explicit rebalance, a fan-out, or a union', () => {
    const { job, numbers } = aJob();
    numbers.rebalance().sinkTo(sink(), { uid: 'a' });
    const evens = numbers.filter((n) => n % 2 === 0, { uid: 'evens' });
    evens.sinkTo(sink(), { uid: 'b' });
    evens.union(numbers).sinkTo(sink(), { uid: 'c' });

    const plan = buildPlan(job);

    expect(shape(plan).map((v) => v.ops)).toEqual([['numbers'], ['a'], ['evens'], ['b'], ['c']]);
    expect(edges(plan).sort()).toEqual(['evens -forward-> b', 'evens -rebalance-> c', 'numbers -forward-> evens', 'numbers -rebalance-> a', 'numbers -rebalance-> c'].sort());
  });

  it('uses the run-time parallelism for operators that set none', () => {
    const { job, numbers } = aJob();
    numbers.sinkTo(sink(), { uid: 'out', parallelism: 1 });

    const plan = buildPlan(job, { parallelism: 3 });

    expect(shape(plan)).toEqual([
      { id: 'numbers', ops: ['numbers'], p: 3 },
      { id: 'out', ops: ['out'], p: 1 },
    ]);
    expect(plan.maxParallelism).toBe(128);
  });

  it('lists input channels: the coordinator for a source, one per upstream subtask for hash, the same index for forward', () => {
    const { job, numbers } = aJob({ parallelism: 3 });
    numbers.keyBy((n) => n).reduce((a, b) => a + b, { uid: 'sum', parallelism: 2 }).map((n) => n, { uid: 'twice', parallelism: 2 }).sinkTo(sink(), { uid: 'out', parallelism: 2 });
    const fanOut = buildPlan(job);
    const forward = aJob({ parallelism: 2 });
    forward.numbers.filter(() => true, { uid: 'f' }).sinkTo(sink(), { uid: 'out' });
    forward.numbers.sinkTo(sink(), { uid: 'out2' });
    const fwd = buildPlan(forward.job);

    expect(inputChannels(fanOut, vertexById(fanOut, 'numbers'), 0)).toEqual(['$coordinator:0']);
    expect(inputChannels(fanOut, vertexById(fanOut, 'sum'), 1)).toEqual(['numbers:0', 'numbers:1', 'numbers:2']);
    expect(inputChannels(fwd, vertexById(fwd, 'f'), 1)).toEqual(['numbers:1']);
  });
});

describe('buildPlan: fingerprint', () => {
  const build = (uid: string, partitionByKey: boolean) => {
    const { job, numbers } = aJob();
    (partitionByKey ? numbers.keyBy((n) => n) : numbers.rebalance()).map((n) => n).sinkTo(sink(), { uid });
    return buildPlan(job).fingerprint;
  };

  it('is the same for the same topology and changes with a uid or a partitioning', () => {
    expect(build('out', true)).toMatch(/^[0-9a-f]{8}$/);
    expect(build('out', true)).toBe(build('out', true));
    expect(build('out2', true)).not.toBe(build('out', true));
    expect(build('out', false)).not.toBe(build('out', true));
  });
});
