import type { PlannedOperator } from '../../graph/plan.js';
import type { Operator } from './operator.js';
import { FilterOperator, FlatMapOperator, MapOperator, processFunctionAsFlatMap } from './stateless.js';
import { KeyedProcessOperator } from './keyed-process.js';
import { AggregateOperator, ReduceOperator } from './rolling.js';
import { WindowOperator } from './window.js';
import { SourceOperator } from './source.js';
import { SinkOperator } from './sink.js';
import { AsyncFlatMapOperator } from './async.js';

/** Creates the runtime operator for a planned operator. */
export function createOperator(op: PlannedOperator): Operator {
  const spec = op.node.spec;
  switch (spec.kind) {
    case 'source':
      return new SourceOperator(op.uid, spec.connector, spec.watermarks);
    case 'map':
      return new MapOperator(op.uid, spec.fn);
    case 'filter':
      return new FilterOperator(op.uid, spec.fn);
    case 'flatMap':
      return new FlatMapOperator(op.uid, spec.fn);
    case 'asyncFlatMap':
      return new AsyncFlatMapOperator(op.uid, spec.fn, spec.capacity, spec.timeoutMs);
    case 'process':
      return new FlatMapOperator(op.uid, processFunctionAsFlatMap(spec.fn));
    case 'keyedProcess':
      return new KeyedProcessOperator(op.uid, spec.fn);
    case 'reduce':
      return new ReduceOperator(op.uid, spec.fn);
    case 'aggregate':
      return new AggregateOperator(op.uid, spec.fn);
    case 'window':
      return new WindowOperator(op.uid, spec.assigner, spec.allowedLateness, spec.fn);
    case 'sink':
      return new SinkOperator(op.uid, spec.connector);
  }
}
